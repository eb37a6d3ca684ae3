#!/usr/bin/env bash
#  console_list.sh: what a page of the console's conversation list costs,
#  grouping every message (the first query of issue 14) against reading a
#  window of the newest messages (dispatcher/sb_store_console.c), on one
#  set of messages.
#
#    bench/console_list.sh DATABASE_URL [MESSAGES [CONVERSATIONS]]
#
#  DATABASE_URL names a server where the user may create databases (the
#  tests' private cluster: scripts/pg.sh url build/pg). The script makes a
#  scratch database, applies the migrations, writes MESSAGES (200,000)
#  messages over CONVERSATIONS (20,000) conversations (message g belongs to
#  conversation hash(g), so a conversation's newest message is anywhere),
#  and prints EXPLAIN (ANALYZE) of the first page and of a page deep in the
#  list with both queries. It drops the scratch database.
set -euo pipefail

url=${1:?usage: $0 DATABASE_URL [MESSAGES [CONVERSATIONS]]}
messages=${2:-200000}
convs=${3:-20000}
here=$(cd "$(dirname "$0")" && pwd)
db="sb_console_list_$$"
scratch="${url%/*}/$db"

psql -qX -v ON_ERROR_STOP=1 "$url" -c "CREATE DATABASE $db"
trap 'psql -qX "$url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q () { psql -qX -v ON_ERROR_STOP=1 "$scratch" "$@"; }

for f in "$here"/../dispatcher/migrations/*.sql; do
    q -f "$f"
done
q -c "INSERT INTO messages (direction, provider, channel, contact_addr, body)
      SELECT CASE WHEN g % 3 = 0 THEN 'outbound' ELSE 'inbound' END, 'twilio', 'sms',
             '+1555' || lpad ((abs (hashint4 (g)) % $convs)::text, 7, '0'), 'message ' || g
        FROM generate_series (1, $messages) g"
q -c "INSERT INTO contacts (provider, channel, address)
      SELECT DISTINCT provider, channel, contact_addr FROM messages"
q -c "VACUUM ANALYZE"
deep=$(q -tA -c "SELECT last_id FROM (SELECT max (id) AS last_id FROM messages
                 GROUP BY provider, channel, contact_addr ORDER BY 1 DESC OFFSET 10000 LIMIT 1) x")

tail_sql="SELECT l.*, m.direction, m.body, c.profile_name, c.opted_out
 FROM last l JOIN messages m ON m.id = l.last_id
 LEFT JOIN contacts c ON c.provider = l.provider AND c.channel = l.channel
 AND c.address = l.contact_addr ORDER BY l.last_id DESC"
grouping="WITH last AS (SELECT provider, channel, contact_addr, max (id) AS last_id
 FROM messages GROUP BY provider, channel, contact_addr
 HAVING \$1::int8 = 0 OR max (id) < \$1::int8 ORDER BY last_id DESC LIMIT 50) $tail_sql"
window="WITH last AS (SELECT s.provider, s.channel, s.contact_addr, s.id AS last_id
 FROM (SELECT id, provider, channel, contact_addr FROM messages
 WHERE \$1::int8 = 0 OR id < \$1::int8 ORDER BY id DESC LIMIT 5000) s
 WHERE NOT EXISTS (SELECT 1 FROM messages n WHERE n.provider = s.provider
 AND n.channel = s.channel AND n.contact_addr = s.contact_addr AND n.id > s.id)
 ORDER BY s.id DESC LIMIT 50) $tail_sql"

for name in grouping window; do
    for before in 0 "$deep"; do
        echo "== $name, before=$before ($messages messages, $convs conversations)"
        q <<SQL | grep -E "Execution Time|Seq Scan|Index|rows=50 loops=1\)$" | head -8
PREPARE p (int8) AS ${!name};
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE p ($before);
SQL
    done
done
