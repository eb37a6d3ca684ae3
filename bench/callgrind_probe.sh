#!/usr/bin/env bash
# Instructions an ingress spends on one webhook, counted by callgrind: a
# number that does not move with the machine's load, for telling a small
# cost on the hot path from noise (bench/README.md). The ingress runs under
# valgrind --tool=callgrind twice, once for N and once for 2N sequential
# keep-alive webhooks of KIND; the difference of the two totals over N is
# the cost of one webhook, start-up and shut-down cancelled out.
#
#   bench/callgrind_probe.sh INGRESS_BIN KIND DIR [N]    KIND: twilio or meta
#   DIR as for bench/ab_probe.sh (gen_requests.py output signed for
#   http://127.0.0.1:18190/twilio/messages, with DIR/twilio_token and
#   DIR/meta_secret). N defaults to 1000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$1 kind=$2 req=$3 n=${4:-1000}
port=18190
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

total() {  # total() COUNT: the Ir total of an ingress that served COUNT webhooks
  local count=$1
  rm -rf "$work/journal" && mkdir -p "$work/journal"
  env SB_LISTEN=127.0.0.1:$port SB_JOURNAL_DIR="$work/journal" SB_PUB=tcp://127.0.0.1:18191 \
    SB_REPLAY=tcp://127.0.0.1:18192 SB_PUBLIC_URL=http://127.0.0.1:$port SB_HTTP_MAX_CONN_PER_IP=0 \
    TWILIO_AUTH_TOKEN="$(cat "$req/twilio_token")" META_APP_SECRET="$(cat "$req/meta_secret")" \
    META_VERIFY_TOKEN=x SB_LOG_LEVEL=warn SB_HTTP_THREADS=16 \
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" > "$work/ingress.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do
    curl -fsS -m1 -o /dev/null http://127.0.0.1:$port/healthz 2>/dev/null && break
    sleep 0.1
  done
  python3 - "$kind" "$req" "$count" "$port" <<'PY'
import http.client, sys
kind, req, count, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tmpl = open("%s/%s.tmpl" % (req, kind), "rb").read()
path, sig_header, ctype = (("/twilio/messages", "X-Twilio-Signature", "application/x-www-form-urlencoded")
                           if kind == "twilio" else
                           ("/meta/whatsapp", "X-Hub-Signature-256", "application/json"))
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
with open("%s/%s.ids" % (req, kind), "rb") as ids:
    for _ in range(count):
        wid, sig = ids.readline().decode().split()
        body = tmpl.replace(b"@ID@", wid.encode())
        conn.request("POST", path, body=body, headers={"Content-Type": ctype, sig_header: sig})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
PY
  kill -TERM $pid
  wait $pid || true
  awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out"
}

one=$(total "$n")
two=$(total $((2 * n)))
awk -v a="$one" -v b="$two" -v n="$n" -v k="$kind" -v bin="$bin" \
  'BEGIN { printf "%s %s: %.0f instructions a webhook (totals %s for %d, %s for %d)\n", bin, k, (b - a) / n, a, n, b, 2 * n }'
