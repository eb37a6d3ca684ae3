#!/usr/bin/env bash
# The dispatcher benchmark (bench/dispatcher/README.md, issue 3).
#
# Builds in Release, starts a private PostgreSQL cluster in a temporary
# directory, then runs steps; each step has a fresh database, the provider
# sandbox, switchboard-ingress (fresh journal) and switchboard-dispatcher
# (echo rule, replies to the sandbox), all at SB_LOG_LEVEL=warn, and
# sb-bench-load posting signed Twilio SMS webhooks at a fixed rate (open
# loop). Steps:
#   rate R         BENCH_DURATION seconds at R webhooks/s, for each R in BENCH_RATES:
#                  events stored per second and the time from the ingress's 200
#                  to the reply at the sandbox (p50/p90/p99/max)
#   no rules       the same at BENCH_NORULES_RATE without SB_RULES (events only)
#   burst          the dispatcher's own capacity: it is stopped (SIGSTOP) while
#                  BENCH_BURST webhooks arrive (the ingress's PUB queue holds
#                  them), then let go (SIGCONT); stored per second while it
#                  catches up. With and without rules.
#   baseline       sb-bench-pqbase storing the same rows with plain multi-row
#                  INSERTs, alone, right after each burst (with and without
#                  replies, SB_BATCH_MAX events per transaction) and at the
#                  dispatcher's mean batch size of the highest rate.
# Everything started here is stopped on exit (trap), whatever happens.
#
#   bench/dispatcher/run.sh
#   BENCH_RATES="250 500 1000 2000 4000"   webhooks per second, one step each
#   BENCH_DURATION=10         seconds of load per rate
#   BENCH_NORULES_RATE=4000   rate of the step without rules (empty: none)
#   BENCH_BURST=40000         webhooks of each burst (empty or 0: no burst steps)
#   BENCH_BURST_RATE=4000     rate the burst is posted at
#   BENCH_BASE_DURATION=10    seconds per baseline run
#   BENCH_CONNECTIONS=64      keep-alive connections of the load tool
#   BENCH_CONTACTS=1000       distinct senders
#   BENCH_DRAIN_MAX=240       seconds to wait, after the load, for every event to be
#                             stored and every reply sent
#   BENCH_BUILD=build-bench   build directory (configured Release, built)
#   BENCH_COMMIT=REV          measure that commit instead of the working tree: a clean
#                             export (git archive), built in the temporary directory
#   BENCH_KEEP=1              keep the temporary directory (journals, PostgreSQL)
#   BENCH_PERF=RATE           `perf record -g` the dispatcher during that rate's step
#   SB_BATCH_MAX=500          the dispatcher's batch cap (also the baseline's batch)
#   BENCH_LATENCY_MS=0        the sandbox answers every send after that long (--latency-ms;
#                             issue 15's replies at provider speed: 200)
#   BENCH_DISPATCHER_ENV=     more settings of the dispatcher, "NAME=value ..."
#                             (SB_SEND_CONCURRENCY=32, say)
#   BENCH_DISPATCHERS=1       dispatchers side by side (each its own SB_DISPATCHER_ID,
#                             ports and PostgreSQL connections), sharing the outbox's
#                             partitions; the load starts once they hold even shares
#   BENCH_PGSS=1              load pg_stat_statements: each step writes PostgreSQL's
#                             statements by total time to <step>/statements.txt
#   BENCH_EXPLAIN_MS=N        with BENCH_PGSS, auto_explain logs the plan of every statement
#                             slower than N ms to PostgreSQL's server.log (BENCH_KEEP=1 keeps it)
# Results: stdout and var/bench/dispatcher/results.md; per-step files (load CSV,
# samples, metrics, sandbox log, service logs) in var/bench/dispatcher/<step>/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
top=$(pwd)
rates=${BENCH_RATES:-250 500 1000 2000 4000}
duration=${BENCH_DURATION:-10}
norules_rate=${BENCH_NORULES_RATE-4000}
burst=${BENCH_BURST-40000}
burst_rate=${BENCH_BURST_RATE:-4000}
base_duration=${BENCH_BASE_DURATION:-10}
connections=${BENCH_CONNECTIONS:-64}
contacts=${BENCH_CONTACTS:-1000}
drain_max=${BENCH_DRAIN_MAX:-240}
perf_rate=${BENCH_PERF:-}
batch_max=${SB_BATCH_MAX:-500}
latency_ms=${BENCH_LATENCY_MS:-0}
sandbox_extra=()
[ "$latency_ms" = 0 ] || sandbox_extra=(--latency-ms "$latency_ms")
read -r -a dispatcher_env <<<"${BENCH_DISPATCHER_ENV:-}"
dispatchers=${BENCH_DISPATCHERS:-1}
case "$dispatchers" in ''|*[!0-9]*|0) echo "bench: BENCH_DISPATCHERS must be 1 or more" >&2; exit 2 ;; esac
build=${BENCH_BUILD:-build-bench}
case "$build" in /*) ;; *) build=$top/$build ;; esac
out=$top/var/bench/dispatcher
[ "$burst" != 0 ] || burst=

say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

for tool in cmake curl python3 psql openssl git; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done

# ---- processes and clean-up ---------------------------------------------------
work=$(mktemp -d /tmp/sb-bench-dispatcher.XXXXXX)
chmod 755 "$work"   # PostgreSQL runs as "postgres" when we are root
pids=()             # every background process we started
pg_started=

stop_pid() {  # stop_pid PID: continue it if stopped, TERM, wait up to 20 s, then KILL
  local pid=$1 t
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for ((t = 0; t < 200; t++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid ignored SIGTERM: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${pids[$i]}"
  done
  pids=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [ -n "$pg_started" ]; then
    "$top/scripts/pg.sh" stop "$work/pg" >/dev/null 2>&1 || true
  fi
  if [ -n "${BENCH_KEEP:-}" ]; then
    say "kept $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'say "failed: line $LINENO: $BASH_COMMAND"' ERR

# ---- build ------------------------------------------------------------------------
# The working tree, or with BENCH_COMMIT a clean export of that commit (git
# archive) with this benchmark's own files copied in, built in $work/build.
rm -rf "$out"
mkdir -p "$out"
src=$top
if [ -n "${BENCH_COMMIT:-}" ]; then
  rev=$(git -C "$top" rev-parse --verify --quiet "$BENCH_COMMIT^{commit}") ||
    die "BENCH_COMMIT=$BENCH_COMMIT is not a commit"
  src=$work/src
  build=$work/build
  mkdir -p "$src"
  git -C "$top" archive "$rev" | tar -x -C "$src"
  mkdir -p "$src/bench/dispatcher"
  cp "$top"/bench/dispatcher/CMakeLists.txt "$top"/bench/dispatcher/*.[ch] "$src/bench/dispatcher/"
  grep -q 'add_subdirectory(dispatcher)' "$src/bench/CMakeLists.txt" ||
    printf '\nadd_subdirectory(dispatcher)\n' >>"$src/bench/CMakeLists.txt"
  source_desc="commit $(git -C "$top" rev-parse --short "$rev") (a clean export with git archive; the benchmark's own tools from the working tree)"
else
  changed=$(git -C "$top" status --porcelain -- common ingress dispatcher cli sandbox proto 2>/dev/null |
    awk '{ print $2 }' | tr '\n' ' ')
  source_desc="the working tree at commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')"
  [ -z "$changed" ] || source_desc="$source_desc, with uncommitted changes in: ${changed% }"
fi
say "building $source_desc (Release) in $build"
targets="switchboard switchboard-ingress switchboard-dispatcher sb-bench-load sb-bench-pqbase"
# The sandbox has its own binary since issue 11; older commits build it into switchboard.
[ ! -f "$src/sandbox/CMakeLists.txt" ] || targets="$targets switchboard-sandbox"
# shellcheck disable=SC2086
{ cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$build" -j2 --target $targets; } >"$out/build.log" 2>&1 ||
  { tail -n 30 "$out/build.log" >&2; die "build failed (log: $out/build.log)"; }
cli=$build/cli/switchboard
sandbox_cmd=("$cli" sandbox)
[ ! -f "$src/sandbox/CMakeLists.txt" ] || sandbox_cmd=("$build/sandbox/switchboard-sandbox")
ingress_bin=$build/ingress/switchboard-ingress
dispatcher_bin=$build/dispatcher/switchboard-dispatcher
load_bin=$build/bench/dispatcher/sb-bench-load
base_bin=$build/bench/dispatcher/sb-bench-pqbase
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {  # wait_http URL PID NAME LOG
  local t
  for ((t = 0; t < 150; t++)); do
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; die "$3 exited at start"; }
    curl -fsS -m 1 -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  tail -n 20 "$4" >&2
  die "$3 is not ready at $1"
}

metric() {  # metric PORTS NAME: an unlabelled counter of the dispatchers (summed), as an
  # integer (0 when one does not answer; awk reads everything: exiting early would
  # fail curl, and through pipefail and set -e the whole script)
  local port sum=0 v
  for port in ${1//,/ }; do
    v=$({ curl -fsS -m 5 "http://127.0.0.1:$port/metrics" || true; } |
      awk -v n="$2" '$1 == n { v = $2 } END { printf "%d", v }')
    sum=$((sum + v))
  done
  echo "$sum"
}

sends_ok() {  # sends_ok PORTS: provider sends answered 2xx so far, by every dispatcher
  local port sum=0 v
  for port in ${1//,/ }; do
    v=$({ curl -fsS -m 10 "http://127.0.0.1:$port/metrics" || true; } |
      awk '/^sb_sends_total\{/ && /outcome="sent"/ { s += $2 } END { printf "%d", s }')
    sum=$((sum + v))
  done
  echo "$sum"
}

# ---- PostgreSQL ---------------------------------------------------------------------
pg_port=$(free_port)
say "starting PostgreSQL in $work/pg on port $pg_port"
pg_started=1   # before the start: a half-started cluster is stopped too
"$top/scripts/pg.sh" start "$work/pg" "$pg_port" >/dev/null
server_url=postgresql://postgres@127.0.0.1:$pg_port
if [ -n "${BENCH_PGSS:-}" ]; then
  printf "shared_preload_libraries = 'pg_stat_statements,auto_explain'\npg_stat_statements.track_planning = on\nauto_explain.log_min_duration = '${BENCH_EXPLAIN_MS:--1}'\n" \
    >>"$work/pg/postgresql.conf"
  "$top/scripts/pg.sh" stop "$work/pg" >/dev/null
  "$top/scripts/pg.sh" start "$work/pg" "$pg_port" >/dev/null
fi
export PGOPTIONS="-c client_min_messages=warning"
psql_q() { psql "$server_url/switchboard" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
new_db() {  # new_db NAME: a fresh database with the dispatcher's schema
  psql_q "DROP DATABASE IF EXISTS $1" >/dev/null
  psql_q "CREATE DATABASE $1" >/dev/null
  DATABASE_URL=$server_url/$1 SB_LOG_LEVEL=warn "$dispatcher_bin" --migrate-only >/dev/null 2>&1 ||
    die "migrations failed on $1"
}
pg_counts() {  # pg_counts DB: transactions committed in DB, WAL fsyncs of the cluster
  psql_q "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'),
                 (SELECT wal_sync FROM pg_stat_wal)" | tr '|' ' '
}

# ---- the disk ----------------------------------------------------------------------
# PostgreSQL's commits and the ingress's journal both wait for fdatasync on
# this disk: its latency bounds how many commits one connection can make.
fsync_ms=$(python3 "$top/bench/fsync_probe.py" "$work/fsync-probe" 500 8192)

# ---- secrets, rules ------------------------------------------------------------------
twilio_token=$(openssl rand -hex 16)
twilio_sid=AC$(openssl rand -hex 16)
meta_secret=$(openssl rand -hex 16)
meta_token=$(openssl rand -hex 16)
cat >"$work/rules.yaml" <<'EOF'
rules:
  - name: echo
    match: { text: { any: true } }
    reply: "Thanks for your message! We received: {text}"
EOF

# ---- one step -------------------------------------------------------------------------
# step NAME RATE SECONDS [norules] [burst]: the whole stack, fresh, loaded at
# RATE webhooks/s for SECONDS; files in $out/NAME.
step() {
  local name=$1 rate=$2 seconds=$3 t flag
  shift 3
  local rules=$work/rules.yaml burst_mode= label=
  for flag in "$@"; do
    case $flag in
      norules) rules= label="$label, no rules" ;;
      burst) burst_mode=1 label="$label, dispatcher stopped meanwhile" ;;
    esac
  done
  local dir=$out/$name db=bench_${name//-/_}
  local sbx_port ing_port pub_port replay_port dis_port dpub_port d
  sbx_port=$(free_port) ing_port=$(free_port) pub_port=$(free_port) replay_port=$(free_port)
  mkdir -p "$dir"
  new_db "$db"
  local public_url=http://127.0.0.1:$ing_port
  {
    echo "name=$name rate=$rate seconds=$seconds rules=${rules:+yes} burst=$burst_mode"
  } >"$dir/step.txt"

  env -i PATH="$PATH" SB_LOG_LEVEL=warn TWILIO_AUTH_TOKEN="$twilio_token" \
    TWILIO_ACCOUNT_SID="$twilio_sid" META_APP_SECRET="$meta_secret" \
    META_ACCESS_TOKEN="$meta_token" \
    "${sandbox_cmd[@]}" --listen "127.0.0.1:$sbx_port" "${sandbox_extra[@]}" >"$dir/sandbox.log" 2>&1 &
  local sandbox_pid=$!
  pids+=($sandbox_pid)
  wait_http "http://127.0.0.1:$sbx_port/healthz" $! sandbox "$dir/sandbox.log"

  # SB_REPLAY/SB_INGRESS_REPLAY: free ports for versions that have replay
  # (the default port may be taken); older versions ignore them, and
  # SB_HTTP_MAX_CONN_PER_IP (the load tool's connections all come from one
  # address, as through a proxy: no per-address limit).
  env -i PATH="$PATH" SB_LOG_LEVEL=warn SB_LISTEN="127.0.0.1:$ing_port" SB_HTTP_MAX_CONN_PER_IP=0 \
    SB_PUB="tcp://127.0.0.1:$pub_port" SB_REPLAY="tcp://127.0.0.1:$replay_port" \
    SB_JOURNAL_DIR="$work/journal-$name" SB_INGRESS_ID=bench SB_PUBLIC_URL="$public_url" \
    TWILIO_AUTH_TOKEN="$twilio_token" META_APP_SECRET="$meta_secret" \
    META_VERIFY_TOKEN="$(openssl rand -hex 8)" \
    "$ingress_bin" >"$dir/ingress.log" 2>&1 &
  local ingress_pid=$!
  pids+=($ingress_pid)
  wait_http "$public_url/healthz" $! ingress "$dir/ingress.log"

  # BENCH_DISPATCHERS dispatchers; dis_port: their /metrics ports, comma-separated
  local dis_ports=() dispatcher_pids=() dispatcher_pid log
  for ((d = 0; d < dispatchers; d++)); do
    local port dport
    port=$(free_port) dport=$(free_port)
    log=$dir/dispatcher.log
    [ "$d" = 0 ] || log=$dir/dispatcher-$d.log
    env -i PATH="$PATH" SB_LOG_LEVEL=warn DATABASE_URL="$server_url/$db" \
      SB_INGRESS_PUB="tcp://127.0.0.1:$pub_port" SB_INGRESS_REPLAY="tcp://127.0.0.1:$replay_port" \
      ${rules:+SB_RULES="$rules"} SB_BATCH_MAX="$batch_max" SB_DISPATCHER_ID="bench-$d" \
      SB_DISPATCHER_LISTEN="127.0.0.1:$port" SB_DISPATCHER_PUB="tcp://127.0.0.1:$dport" \
      TWILIO_API_BASE="http://127.0.0.1:$sbx_port" META_API_BASE="http://127.0.0.1:$sbx_port" \
      TWILIO_AUTH_TOKEN="$twilio_token" TWILIO_ACCOUNT_SID="$twilio_sid" \
      META_ACCESS_TOKEN="$meta_token" SB_PUBLIC_URL="$public_url" "${dispatcher_env[@]}" \
      "$dispatcher_bin" >"$log" 2>&1 &
    dispatcher_pid=$!
    pids+=($dispatcher_pid)
    dispatcher_pids+=($dispatcher_pid)
    dis_ports+=("$port")
    wait_http "http://127.0.0.1:$port/readyz" $! dispatcher "$log"
  done
  dispatcher_pid=${dispatcher_pids[0]}
  dis_port=$(IFS=,; echo "${dis_ports[*]}")
  # Several: wait (60 s at most) until each holds its even share of the partitions.
  for ((t = 0; t < 600 && dispatchers > 1; t++)); do
    local short=0
    for d in "${dis_ports[@]}"; do
      [ "$(metric "$d" sb_dispatcher_partitions)" -ge $((256 / dispatchers)) ] || short=1
    done
    [ "$short" = 0 ] && break
    sleep 0.1
  done
  echo "dispatchers=$dispatchers partitions=$(for d in "${dis_ports[@]}"; do
    metric "$d" sb_dispatcher_partitions; done | tr '\n' ' ')" >>"$dir/step.txt"

  # The SUB socket joins asynchronously: warm-up webhooks (MessageSids of
  # their own, tag ffffNNNN) until one is stored, then their replies.
  local warm=0 stored=0
  for ((t = 0; t < 60 && stored < 1; t++)); do
    TWILIO_AUTH_TOKEN=$twilio_token TWILIO_ACCOUNT_SID=$twilio_sid "$load_bin" \
      --url "$public_url" --rate 1 --duration 1 --connections 1 --contacts "$contacts" \
      --tag "$(printf 'ffff%04x' "$t")" --drain 5 >/dev/null
    warm=$((warm + 1))
    sleep 0.2
    stored=$(metric "$dis_port" sb_events_stored_total)
  done
  [ "$stored" -ge 1 ] || die "the dispatcher never stored a warm-up webhook (see $dir/dispatcher.log)"
  for ((t = 0; t < 100; t++)); do
    [ "$(metric "$dis_port" sb_events_stored_total)" -ge "$warm" ] && break
    sleep 0.1
  done
  for ((t = 0; t < 100 && ${#rules} > 0; t++)); do
    [ "$(sends_ok "$dis_port")" -ge "$warm" ] && break
    sleep 0.1
  done
  curl -fsS -m 10 -X DELETE "http://127.0.0.1:$sbx_port/_sandbox/requests" >/dev/null
  local stored0 sends0
  stored0=$(metric "$dis_port" sb_events_stored_total)
  sends0=$(sends_ok "$dis_port")

  # Sample the counters every 200 ms; its first sample is their zero.
  python3 "$top/bench/dispatcher/sample.py" "$dis_port" "$ing_port" "$dir/samples.csv" \
    "$dir/stop-sampling" &
  local sampler=$!
  pids+=($sampler)
  for ((t = 0; t < 100; t++)); do
    [ -f "$dir/samples.csv" ] && [ "$(wc -l <"$dir/samples.csv")" -ge 2 ] && break
    sleep 0.05
  done

  local perf_pid=
  if [ "$rate" = "$perf_rate" ] && [ -z "$burst_mode" ] && [ -n "$rules" ] &&
     command -v perf >/dev/null; then
    perf record -g -F 499 -p "$dispatcher_pid" -o "$dir/perf.data" >/dev/null 2>&1 &
    perf_pid=$!
    pids+=($perf_pid)
  fi

  local pgstat0 ours
  pgstat0=$(pg_counts "$db")
  if [ -n "${BENCH_PGSS:-}" ]; then
    psql "$server_url/$db" -X -q -At -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
      SELECT pg_stat_statements_reset()" >/dev/null
  fi
  # CPU accounting: the benchmark's processes (PostgreSQL's with its postmaster)
  ours="$sandbox_pid $ingress_pid ${dispatcher_pids[*]} $sampler $(head -n 1 "$work/pg/postmaster.pid")"
  python3 "$top/bench/dispatcher/cpu.py" $ours >"$dir/cpu.txt"
  [ -z "$burst_mode" ] || kill -STOP "${dispatcher_pids[@]}"
  say "$name: $rate webhooks/s for ${seconds}s$label"
  TWILIO_AUTH_TOKEN=$twilio_token TWILIO_ACCOUNT_SID=$twilio_sid "$load_bin" \
    --url "$public_url" --rate "$rate" --duration "$seconds" --connections "$connections" \
    --contacts "$contacts" --tag "$(printf '%08x' "$rate")" --out "$dir/load.csv" \
    >"$dir/load.txt" || die "sb-bench-load failed in step $name"
  if [ -n "$burst_mode" ]; then
    sleep 0.5
    echo "t_cont_ns=$(date +%s%N)" >>"$dir/step.txt"
    kill -CONT "${dispatcher_pids[@]}"
  fi
  cat "$dir/load.txt" >&2
  local ok
  ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' "$dir/load.txt")

  # Wait until every acknowledged webhook is stored and, except in a burst,
  # answered (BENCH_DRAIN_MAX seconds at most).
  local deadline=$((SECONDS + drain_max))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(metric "$dis_port" sb_events_stored_total)" -ge "$((stored0 + ok))" ] && break
    sleep 0.1
  done
  while [ -n "$rules" ] && [ -z "$burst_mode" ] && [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(sends_ok "$dis_port")" -ge "$((sends0 + ok))" ] && break
    sleep 0.2
  done
  [ "$SECONDS" -lt "$deadline" ] ||
    say "$name: not everything stored and answered after ${drain_max}s; stopping there"
  python3 "$top/bench/dispatcher/cpu.py" $ours >>"$dir/cpu.txt"
  sleep 0.5
  touch "$dir/stop-sampling"
  wait "$sampler" 2>/dev/null || true
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf report -i "$dir/perf.data" --no-children --sort comm,dso,symbol --percent-limit 1 \
      --stdio -g none 2>/dev/null | grep -v '^$' | head -80 >"$dir/perf.txt" || true
  fi
  curl -fsS -m 10 "http://127.0.0.1:${dis_ports[0]}/metrics" >"$dir/metrics.txt"
  for ((d = 1; d < dispatchers; d++)); do
    curl -fsS -m 10 "http://127.0.0.1:${dis_ports[$d]}/metrics" >"$dir/metrics-$d.txt"
  done
  if [ -n "${BENCH_PGSS:-}" ]; then
    psql "$server_url/$db" -X -q -F ' | ' -A -c "SELECT calls, round(total_exec_time) AS exec_ms, round(total_plan_time) AS plan_ms,
        round((total_exec_time / greatest(calls, 1))::numeric, 3) AS mean_ms, rows,
        shared_blks_hit + shared_blks_read AS blks, left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query
      FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 25" >"$dir/statements.txt" || true
  fi
  curl -fsS -m 60 "http://127.0.0.1:$sbx_port/_sandbox/requests" >"$dir/sandbox.json"
  stop_all
  sleep 1   # the backends' last statistics
  {
    psql "$server_url/$db" -X -q -At -F ' ' -c \
      "SELECT count(*), (SELECT count(*) FROM outbox WHERE state = 'sent'),
              round(avg(length(payload))) FROM events"
    echo "$pgstat0"
    pg_counts "$db"
  } | tr '\n' ' ' >"$dir/db.txt"
  psql_q "DROP DATABASE $db" >/dev/null
  rm -rf "$work/journal-$name"
}

# base NAME BATCH [--no-reply]: one baseline run, alone, on a fresh database.
base() {
  local name=$1 b=$2
  shift 2
  new_db bench_base
  say "$name: sb-bench-pqbase, batches of $b ${1:+(no replies) }for ${base_duration}s"
  local postmaster base_pid
  postmaster=$(head -n 1 "$work/pg/postmaster.pid")
  "$base_bin" --db "$server_url/bench_base" --batch "$b" --duration "$base_duration" \
    --events 100000000 --contacts "$contacts" "$@" >"$out/$name.txt" &
  base_pid=$!
  pids+=($base_pid)
  # CPU accounting inside the run, while its PostgreSQL backend lives
  if [ "$base_duration" -ge 4 ]; then
    sleep 1
    python3 "$top/bench/dispatcher/cpu.py" "$postmaster" "$base_pid" >"$out/$name.cpu"
    sleep $((base_duration - 2))
    python3 "$top/bench/dispatcher/cpu.py" "$postmaster" "$base_pid" >>"$out/$name.cpu"
  fi
  wait "$base_pid" || die "sb-bench-pqbase failed"
  pids=()   # base runs alone: nothing else was in the list
  cat "$out/$name.txt" >&2
  psql_q "DROP DATABASE bench_base" >/dev/null
}

# ---- the run ---------------------------------------------------------------------------
for rate in $rates; do
  step "r$rate" "$rate" "$duration"
done
if [ -n "$norules_rate" ]; then
  step "r$norules_rate-norules" "$norules_rate" "$duration" norules
fi
burst_seconds=
if [ -n "$burst" ]; then
  burst_seconds=$(awk -v n="$burst" -v r="$burst_rate" 'BEGIN { printf "%.3f", n / r }')
  step burst "$burst_rate" "$burst_seconds" burst
fi
base base-"$batch_max" "$batch_max"
if [ -n "$burst" ]; then
  step burst-norules "$burst_rate" "$burst_seconds" burst norules
fi
base base-"$batch_max"-noreply "$batch_max" --no-reply
# the dispatcher's mean batch at the highest rate
last_rate=${rates##* }
mean_batch=$(awk '/^sb_store_batch_events_sum/ { s = $2 } /^sb_store_batch_events_count/ { c = $2 }
  END { if (c > 0) printf "%d", s / c + 0.5; else print 0 }' "$out/r$last_rate/metrics.txt")
if [ "$mean_batch" -ge 1 ] && [ "$mean_batch" != "$batch_max" ]; then
  base base-"$mean_batch" "$mean_batch"
fi

# ---- report ----------------------------------------------------------------------------
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "source=$source_desc"
  echo "batch_max=$batch_max"
  echo "duration=$duration"
  echo "connections=$connections"
  echo "contacts=$contacts"
  echo "fs=$(stat -f -c %T "$work")"
  echo "fsync_ms=$fsync_ms"
  echo "pg_version=$(psql_q "SHOW server_version" | cut -d' ' -f1)"
  echo "loadavg=$load_start / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rates=$rates"
  echo "command=$(for v in BENCH_RATES BENCH_DURATION BENCH_NORULES_RATE BENCH_BURST BENCH_BURST_RATE \
    BENCH_LATENCY_MS BENCH_DISPATCHER_ENV BENCH_DISPATCHERS \
    BENCH_BASE_DURATION BENCH_CONNECTIONS BENCH_CONTACTS BENCH_COMMIT SB_BATCH_MAX; do
    [ -z "${!v+x}" ] || printf '%s=%q ' "$v" "${!v}"; done)bench/dispatcher/run.sh"
} >"$out/run.txt"
python3 "$top/bench/dispatcher/report.py" "$out" | tee "$out/results.md"
say "results in $out/results.md"
