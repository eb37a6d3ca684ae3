#!/usr/bin/env bash
# An A/B probe of the ingress (bench/README.md, "Issue 10"): one binary under
# wrk keep-alive (64 connections, 8 s, the pre-signed requests of
# bench/gen_requests.py in DIR), reporting requests/s, the ingress's CPU
# microseconds per request (user, sys from /proc), context switches per
# request and journal commits. Run two binaries alternately, several times:
# on this 2-CPU VM a single wrk run swings by 20%, the CPU per request much
# less.
#
#   bench/ab_probe.sh INGRESS_BIN LABEL KIND DIR    KIND: twilio or meta
#   DIR holds twilio.tmpl/ids and meta.tmpl/ids from gen_requests.py, signed
#   with the secrets in DIR/twilio_token and DIR/meta_secret, for
#   http://127.0.0.1:18190/twilio/messages. PROBE_LOG=info: the ingress's
#   log level (default warn), logging to DIR/ingress-LABEL.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$(pwd)
bin=$1 label=$2 kind=$3 req=$4
port=18190
work=$req/run
rm -rf "$work"; mkdir -p "$work/journal"
env SB_LISTEN=127.0.0.1:$port SB_JOURNAL_DIR="$work/journal" SB_PUB=tcp://127.0.0.1:18191 \
  SB_REPLAY=tcp://127.0.0.1:18192 SB_PUBLIC_URL=http://127.0.0.1:$port SB_HTTP_MAX_CONN_PER_IP=0 \
  SB_JOURNAL_MAX_BYTES=16g SB_JOURNAL_HARD_MAX_BYTES=16g \
  TWILIO_AUTH_TOKEN=$(cat "$req/twilio_token") META_APP_SECRET=$(cat "$req/meta_secret") META_VERIFY_TOKEN=x \
  SB_LOG_LEVEL=${PROBE_LOG:-warn} "$bin" > "$req/ingress-$label.log" 2>&1 &
pid=$!
for i in $(seq 100); do curl -fsS -m1 -o /dev/null http://127.0.0.1:$port/healthz 2>/dev/null && break; sleep 0.1; done
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
cs0=$(cat /proc/$pid/task/*/status | awk '/^voluntary_ctxt_switches/ {v+=$2} /^nonvoluntary/ {n+=$2} END {print v+n}')
wrk -t2 -c64 -d8s --timeout 5s -s "$top/bench/webhook.lua" http://127.0.0.1:$port -- "$kind" "$req" 0 400000 2 keep > "$req/wrk-$label.txt" 2>&1 || true
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
cs1=$(cat /proc/$pid/task/*/status | awk '/^voluntary_ctxt_switches/ {v+=$2} /^nonvoluntary/ {n+=$2} END {print v+n}')
m=$(curl -fsS http://127.0.0.1:$port/metrics)
kill -TERM $pid; wait $pid || true
n=$(grep '^SBRESULT' $req/wrk-$label.txt | tr ' ' '\n' | awk -F= '$1=="requests"{print $2}')
rps=$(grep '^SBRESULT' $req/wrk-$label.txt | tr ' ' '\n' | awk -F= '$1=="rps"{print $2}')
commits=$(echo "$m" | awk '/^sb_journal_commits_total/ {print $2}')
hz=$(getconf CLK_TCK)
awk -v l=$label -v n=$n -v rps=$rps -v du=$((u1-u0)) -v ds=$((s1-s0)) -v hz=$hz -v cs=$((cs1-cs0)) -v c="$commits" \
  'BEGIN { printf "%s requests=%d rps=%.0f cpu_us_per_req user=%.1f sys=%.1f ctxsw_per_req=%.2f commits=%s\n", l, n, rps, du/hz*1e6/n, ds/hz*1e6/n, cs/n, c }'
