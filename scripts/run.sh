#!/usr/bin/env bash
# The run command: install what is missing, build, and start the whole
# system natively from var/ (git-ignored):
#
#   var/dev.env     development secrets, made once (mode 600), reused later
#   var/pg/         a private PostgreSQL cluster on 127.0.0.1 (scripts/pg.sh)
#   var/journal/    the ingress journal
#   var/log/*.log   one log per process
#
# Started in this order: PostgreSQL, the provider sandbox (fake Twilio and
# Meta APIs on :8090), switchboard-ingress (:8080), switchboard-dispatcher
# (:8081, when it is built). Each one's /healthz is awaited. Ctrl-C stops
# them in reverse order. A process that dies makes the script print its log
# tail, stop the others and exit non-zero.
#
#   SB_RUN_PG_PORT   port of the private PostgreSQL cluster (default 55433;
#                    the tests' cluster uses 19432)
#   SB_RUN_NO_BUILD  1: skip deps.sh and the build (use what build/ holds)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$(pwd)

ingress_listen=127.0.0.1:8080
dispatcher_listen=127.0.0.1:8081
sandbox_listen=127.0.0.1:8090
ingress_pub=tcp://127.0.0.1:5556
dispatcher_pub=tcp://127.0.0.1:5558
pg_port=${SB_RUN_PG_PORT:-55433}

build=$top/build
var=$top/var
cli=$build/cli/switchboard
sandbox_bin=$build/sandbox/switchboard-sandbox
ingress_bin=$build/ingress/switchboard-ingress
dispatcher_bin=$build/dispatcher/switchboard-dispatcher

say() { echo "run.sh: $*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

# ---- build ------------------------------------------------------------------
if [ "${SB_RUN_NO_BUILD:-0}" != 1 ]; then
  scripts/deps.sh
  cmake -S "$top" -B "$build" >/dev/null
  cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)"
fi
[ -x "$cli" ] || die "$cli is missing: the build did not make it"
[ -x "$ingress_bin" ] || die "$ingress_bin is missing: the build did not make it"
[ -x "$sandbox_bin" ] || die "$sandbox_bin is missing: the build did not make it"

# ---- var/ and the development secrets ----------------------------------------
mkdir -p "$var/log" "$var/journal"

pg_sh=$top/scripts/pg.sh
with_pg=0
[ -x "$pg_sh" ] && with_pg=1
database_url=
[ "$with_pg" = 1 ] && database_url=$("$pg_sh" url "$var/pg" "$pg_port")

env_file=$var/dev.env
if [ ! -f "$env_file" ]; then
  say "making development secrets in var/dev.env"
  (
    umask 077
    {
      echo "# switchboard development settings, made by scripts/run.sh. Not for production."
      echo "# Use: (set -a; . var/dev.env; build/cli/switchboard send twilio-sms --body hello)"
      printf 'TWILIO_ACCOUNT_SID=AC%s\n' "$(openssl rand -hex 16)"
      printf 'TWILIO_AUTH_TOKEN=%s\n' "$(openssl rand -hex 16)"
      printf 'META_APP_SECRET=%s\n' "$(openssl rand -hex 16)"
      printf 'META_VERIFY_TOKEN=%s\n' "$(openssl rand -hex 16)"
      printf 'META_ACCESS_TOKEN=EAAdev%s\n' "$(openssl rand -hex 32)"
      echo "SB_PUBLIC_URL=http://$ingress_listen"
      echo "TWILIO_API_BASE=http://$sandbox_listen"
      echo "META_API_BASE=http://$sandbox_listen"
      echo "TWILIO_MESSAGING_API_BASE=http://$sandbox_listen"
      # the sandbox starts with this number (its URLs empty): switchboard connect twilio sets them
      echo "TWILIO_PHONE_NUMBER=+14155550100"
      echo "SB_RULES=examples/rules.yaml"
      echo "SB_INGRESS_PUB=$ingress_pub"
      echo "SB_JOURNAL_DIR=var/journal"
      printf 'DATABASE_URL=%q\n' "$database_url"
    } >"$env_file.tmp"
    mv "$env_file.tmp" "$env_file"
  )
fi
chmod 600 "$env_file"
# The cluster's URL follows SB_RUN_PG_PORT; the secrets stay as made.
if [ "$with_pg" = 1 ] && ! grep -qxF "DATABASE_URL=$(printf %q "$database_url")" "$env_file"; then
  (
    umask 077
    grep -v '^DATABASE_URL=' "$env_file" >"$env_file.tmp" || true
    printf 'DATABASE_URL=%q\n' "$database_url" >>"$env_file.tmp"
    mv "$env_file.tmp" "$env_file"
  )
fi
# A dev.env made before switchboard connect: add what connect and doctor read.
for line in "TWILIO_MESSAGING_API_BASE=http://$sandbox_listen" "TWILIO_PHONE_NUMBER=+14155550100"; do
  grep -q "^${line%%=*}=" "$env_file" || printf '%s\n' "$line" >>"$env_file"
done
set -a
# shellcheck source=/dev/null
. "$env_file"
set +a

# ---- ports ------------------------------------------------------------------
port_busy() {  # port_busy PORT: true when something listens on 127.0.0.1:PORT
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}
for hp in "$ingress_listen" "$dispatcher_listen" "$sandbox_listen" \
  "${ingress_pub#tcp://}" "${dispatcher_pub#tcp://}"; do
  port_busy "${hp##*:}" && die "port ${hp##*:} is in use (is another run.sh running?)"
done
[ "$with_pg" = 1 ] && port_busy "$pg_port" &&
  die "port $pg_port is in use: set SB_RUN_PG_PORT to a free port"

# ---- processes ----------------------------------------------------------------
names=()
pids=()
logs=()
pg_started=0
stopping=0

stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  local i pid t
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -0 "$pid" 2>/dev/null || continue
    say "stopping ${names[i]} (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((t = 0; t < 100; t++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "${names[i]} did not stop within 10 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [ "$pg_started" = 1 ]; then
    say "stopping PostgreSQL"
    "$pg_sh" stop "$var/pg" >>"$var/log/postgres.log" 2>&1 ||
      say "pg.sh stop failed (see var/log/postgres.log)"
  fi
}
trap 'stop_all' EXIT
trap 'echo; stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

log_tail() {  # log_tail INDEX
  echo "---- last lines of ${logs[$1]#"$top"/} ----" >&2
  tail -n 30 "${logs[$1]}" >&2 || true
  echo "----" >&2
}

# start NAME COMMAND...: start a process in its own session (so Ctrl-C reaches
# only this script, which then stops everything in order), logging to
# var/log/NAME.log.
start() {
  local name=$1
  shift
  local log=$var/log/$name.log
  : >"$log"
  setsid "$@" >>"$log" 2>&1 </dev/null &
  names+=("$name")
  pids+=("$!")
  logs+=("$log")
  say "started $name (pid $!, log var/log/$name.log)"
}

# await_health INDEX URL: wait until URL answers 2xx, or fail when the process
# dies or 30 s pass.
await_health() {
  local i=$1 url=$2 t
  for ((t = 0; t < 300; t++)); do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      wait "${pids[i]}" && rc=0 || rc=$?
      echo "run.sh: ${names[i]} exited at start (status $rc)" >&2
      log_tail "$i"
      exit 1
    fi
    curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: ${names[i]} did not answer $url within 30 s" >&2
  log_tail "$i"
  exit 1
}

if [ "$with_pg" = 1 ]; then
  say "starting PostgreSQL on 127.0.0.1:$pg_port (var/pg)"
  : >"$var/log/postgres.log"
  pg_started=1
  if ! setsid "$pg_sh" start "$var/pg" "$pg_port" >>"$var/log/postgres.log" 2>&1 </dev/null; then
    echo "run.sh: PostgreSQL did not start" >&2
    tail -n 30 "$var/log/postgres.log" >&2
    exit 1
  fi
else
  say "scripts/pg.sh is missing: not starting PostgreSQL"
fi

start sandbox "$sandbox_bin" --listen "$sandbox_listen" --callbacks "http://$ingress_listen"
await_health $((${#pids[@]} - 1)) "http://$sandbox_listen/healthz"

start ingress env SB_LISTEN="$ingress_listen" SB_PUB="$ingress_pub" \
  SB_JOURNAL_DIR="$var/journal" "$ingress_bin"
await_health $((${#pids[@]} - 1)) "http://$ingress_listen/healthz"

if [ -x "$dispatcher_bin" ]; then
  [ "$with_pg" = 1 ] || die "the dispatcher needs PostgreSQL, and scripts/pg.sh is missing"
  start dispatcher env SB_DISPATCHER_LISTEN="$dispatcher_listen" \
    SB_DISPATCHER_PUB="$dispatcher_pub" "$dispatcher_bin"
  await_health $((${#pids[@]} - 1)) "http://$dispatcher_listen/healthz"
else
  say "switchboard-dispatcher is not built yet: running without it"
fi

# The sandbox's number calls this ingress, as `switchboard connect` would
# set a real one (README, "Going live"): doctor then finds it right.
if [ -x "$cli" ] && "$cli" connect twilio >"$var/log/connect.log" 2>&1; then
  say "pointed the sandbox's number $TWILIO_PHONE_NUMBER at the ingress (switchboard connect twilio)"
else
  say "switchboard connect twilio did not succeed (var/log/connect.log); doctor will say why"
fi

cat <<EOF

switchboard is running: ${names[*]}$([ "$pg_started" = 1 ] && echo " and PostgreSQL on :$pg_port").
Logs in var/log/, journal in var/journal/, settings in var/dev.env.

Watch events (in another terminal, from $top):
  build/cli/switchboard tap $ingress_pub $dispatcher_pub

Send a first webhook, signed as Twilio signs it:
  (set -a; . var/dev.env; build/cli/switchboard send twilio-sms --body hello)

Check every setting, service and webhook URL (README, "Going live"):
  (set -a; . var/dev.env; build/cli/switchboard doctor)

Press Ctrl-C to stop everything.
EOF

# Wait until a process exits (that is a failure) or a signal stops the script.
while :; do
  wait -n "${pids[@]}" 2>/dev/null || true
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "run.sh: ${names[i]} exited unexpectedly" >&2
      log_tail "$i"
      exit 1
    fi
  done
done
