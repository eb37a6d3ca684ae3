#!/bin/sh
# bench/retain.sh: table sizes under SB_RETAIN_DAYS (issue 15, "Data lifecycle").
#
#   bench/retain.sh DATABASE_URL [DAYS_WRITTEN] [ROWS_PER_DAY] [RETAIN_DAYS] [ROUNDS]
#
# Migrates DATABASE_URL (an empty database), writes DAYS_WRITTEN days of traffic with
# back-dated timestamps, in time order (events, messages, finished outbox rows), then runs
# ROUNDS rounds of: age every row by a day and write one more day, run the dispatcher until its retention pass is done,
# VACUUM, print row counts and table sizes. With retention the sizes stay flat from round to
# round; with RETAIN_DAYS 0 they grow by a day each round. Build first (build/dispatcher).
set -eu
url=${1:?DATABASE_URL}
days=${2:-120}
per_day=${3:-5000}
retain=${4:-90}
rounds=${5:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SB_DISPATCHER:-$here/build/dispatcher/switchboard-dispatcher}
q() { psql "$url" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

DATABASE_URL=$url "$bin" --migrate-only >/dev/null 2>&1
write_days() {  # $1 first day back, $2 last day back (inclusive, older first)
    q "INSERT INTO events (ingress_id, seq, provider, channel, kind, received_at, payload, created_at)
       SELECT 'bench', nextval('events_id_seq'), 'twilio', 'sms', 'message', t, '\\x'::bytea, t
       FROM generate_series($1, $2, -1) d, generate_series(1, $per_day) i,
            LATERAL (SELECT now() - d * interval '1 day' + i * interval '1 ms' AS t) x"
    q "INSERT INTO messages (direction, provider, channel, contact_addr, created_at, updated_at)
       SELECT 'inbound', 'twilio', 'sms', '+15550001111', t, t
       FROM generate_series($1, $2, -1) d, generate_series(1, $per_day) i,
            LATERAL (SELECT now() - d * interval '1 day' + i * interval '1 ms' AS t) x"
    q "INSERT INTO outbox (kind, state, provider, channel, created_at, updated_at)
       SELECT 'reply', 'sent', 'twilio', 'sms', t, t
       FROM generate_series($1, $2, -1) d, generate_series(1, $per_day) i,
            LATERAL (SELECT now() - d * interval '1 day' + i * interval '1 ms' AS t) x"
}
report() {
    q "VACUUM events, messages, outbox"
    q "SELECT '$1', (SELECT count(*) FROM events), (SELECT count(*) FROM messages),
       (SELECT count(*) FROM outbox),
       pg_size_pretty(pg_total_relation_size('events') + pg_total_relation_size('messages')
                      + pg_total_relation_size('outbox'))" | tr '|' '\t'
}
printf 'when\tevents\tmessages\toutbox\tsize\n'
write_days "$days" 1
report "written $days days"
for r in $(seq 1 "$rounds"); do
    # a day passes: every row a day older, then today's traffic
    q "UPDATE events SET created_at = created_at - interval '1 day'"
    q "UPDATE messages SET created_at = created_at - interval '1 day', updated_at = updated_at - interval '1 day'"
    q "UPDATE outbox SET created_at = created_at - interval '1 day', updated_at = updated_at - interval '1 day'"
    write_days 0 0
    total="SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM messages) + (SELECT count(*) FROM outbox)"
    start=$(q "$total")
    SB_RETAIN_DAYS=$retain DATABASE_URL=$url SB_INGRESS_REPLAY= SB_LOG_LEVEL=warn \
        SB_DISPATCHER_LISTEN=127.0.0.1:${SB_BENCH_PORT:-18381} \
        SB_DISPATCHER_PUB=tcp://127.0.0.1:$((${SB_BENCH_PORT:-18381} + 1)) "$bin" &
    pid=$!
    # the pass is done when the counts moved and then stood still for 3 s (at most 10 min)
    last=-1
    for _ in $(seq 1 200); do
        sleep 3
        kill -0 "$pid" || { echo "the dispatcher exited" >&2; exit 1; }
        now=$(q "$total")
        [ "$now" = "$last" ] && { [ "$now" != "$start" ] || [ "$retain" = 0 ]; } && break
        last=$now
    done
    kill "$pid"; wait "$pid" || true
    report "round $r"
done
