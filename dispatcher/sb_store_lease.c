/*  sb_store_lease: the store's side of sharing the outbox among several
    dispatchers (see sb_store.h, sb_store_lease_tick): the registry of live
    dispatchers, the partitions' leases, and putting back the rows a
    previous holder of a partition left "sending".

    DESIGN (leases and fencing). dispatcher_partitions holds 256 rows
    (0010_dispatcher_partitions.sql). A partition is held by the store
    instance named in its row (the random head of this process's claim
    tokens, sb_store_conn.c) until lease_until, by PostgreSQL's clock, so
    the dispatchers' own clocks never matter. Each tick, in one
    transaction:
      1. this instance says it is alive (dispatchers.seen_at);
      2. it renews every partition still naming it, expired or not: a
         partition naming it was held by nobody else since (any other
         holder would have changed the name), so renewing it late is safe;
      3. it counts the live dispatchers (seen within a lease) and its rank
         among them by id, and from that its share (sb_partition_target);
      4. short of its share, it takes free partitions (no holder, or a
         lease passed), each with epoch + 1; over its share, it gives up
         the surplus that holds no row "sending" (a row this instance
         claimed is "sending" until its result is recorded, so nothing it
         holds in memory or in flight), so a partition changes hands empty;
      5. it puts back to pending every row "sending" in a partition it now
         holds that was not claimed by this instance: rows a dead or stale
         holder left (only its in-flight sends may go out twice); a row a
         stopped holder's open transaction still locks waits for a later
         tick.
    The tick's transaction takes several round trips, so a holder stopped
    inside one keeps its partition rows locked, and the others' takes skip
    locked rows: the delivery actor's session may stay idle inside a
    transaction for half a lease at most (sb_store_new_idle), so
    PostgreSQL ends it, and frees them, within the failover time. Not
    so inside a pipeline (a settle): the server counts no idle time
    until the pipeline's end comes, so a holder stopped between two
    writes of one settle keeps what it locked while its session lives
    (the put-back skips those rows, see step 5).
    Fencing: every claim joins the partition rows and takes only rows of
    partitions naming this instance with a lease still running, and locks
    those partition rows (FOR SHARE) so a take-over waits for the claim to
    end; every send result applies only to a row still "sending" under
    its claim's token whose partition still names the token's instance
    (sb_store_outbox.c). A holder that lost a partition (stopped past its
    lease, SIGSTOP) can therefore neither claim nor record in it once
    another took it: its results find the row put back (step 5) or the
    partition renamed, and are counted (sb_store_fenced). The epoch counts
    the changes of holder, for people and /metrics: the instance name in
    the same row is what the statements check, and it changes exactly
    when the epoch does.

    Limits: a tick costs five statements; the delivery actor runs one every
    eighth of SB_DISPATCHER_FAILOVER_MS. A dispatcher whose PostgreSQL
    round trips stall past its lease loses its partitions like a dead one.
*/
#include "sb_store_internal.h"
#include "sb_partition.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MODULE "store"

//  1. Alive ($1 instance, $2 id); dispatchers not seen for a day go.
static const char s_alive_sql[] =
    "WITH gone AS (DELETE FROM dispatchers WHERE seen_at < now () - interval '1 day')"
    " INSERT INTO dispatchers AS d (instance, id) VALUES ($1, $2)"
    " ON CONFLICT (instance) DO UPDATE SET seen_at = now (), id = EXCLUDED.id";

//  2. Renew what names this instance ($1; $2 the lease in ms).
static const char s_renew_sql[] =
    "UPDATE dispatcher_partitions SET lease_until = now () + $2::int8 * interval '1 millisecond'"
    " WHERE instance = $1 RETURNING part, epoch";

//  3. The live dispatchers, by id ($1 the lease in ms).
static const char s_live_sql[] =
    "SELECT instance FROM dispatchers"
    " WHERE seen_at > now () - $1::int8 * interval '1 millisecond' ORDER BY id, instance";

//  4a. Take up to $3 free partitions ($1 instance, $2 id, $4 lease ms).
static const char s_take_sql[] =
    "UPDATE dispatcher_partitions p SET instance = $1, owner = $2, epoch = p.epoch + 1,"
    " lease_until = now () + $4::int8 * interval '1 millisecond'"
    " FROM (SELECT part FROM dispatcher_partitions WHERE instance = '' OR lease_until <= now ()"
    " ORDER BY lease_until, part LIMIT $3 FOR UPDATE SKIP LOCKED) f"
    " WHERE p.part = f.part RETURNING p.part, p.epoch";

//  4b. Give up partitions ($2) that hold no row "sending".
static const char s_give_sql[] =
    "UPDATE dispatcher_partitions p SET instance = '', owner = '', lease_until = '-infinity'"
    " WHERE p.instance = $1 AND p.part = ANY ($2::int2[])"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.state = 'sending' AND o.part = p.part)"
    " RETURNING p.part";

//  5. Rows left "sending" in partitions this instance holds by claims not
//  its own. SKIP LOCKED: a row another transaction holds (its stale
//  holder, stopped inside a settle that records it) is left to a later
//  tick, once that transaction ended, rather than waited on: waiting
//  would fail the tick at lock_timeout and undo its take with it.
static const char s_recover_sql[] =
    "UPDATE outbox o SET state = 'pending', claim_token = NULL, updated_at = now ()"
    " FROM (SELECT x.id FROM outbox x JOIN dispatcher_partitions p ON p.part = x.part"
    " WHERE x.state = 'sending' AND p.instance = $1"
    " AND (x.claim_token IS NULL OR split_part (x.claim_token, '.', 1) <> $1)"
    " FOR UPDATE OF x SKIP LOCKED) f"
    " WHERE o.id = f.id";

//  Parse "part, epoch" rows into the lease.
static void
s_held_rows (const PGresult *r, sb_store_lease_t *lease)
{
    for (int row = 0; row < PQntuples (r); row++) {
        int64_t part = -1, epoch = 0;
        sb_store_parse_int64 (PQgetvalue (r, row, 0), &part);
        if (PQnfields (r) > 1)
            sb_store_parse_int64 (PQgetvalue (r, row, 1), &epoch);
        if (part < 0 || part >= SB_PARTITIONS)
            continue;
        if (!lease->held[part])
            lease->owned++;
        lease->held[part] = true;
        if (epoch > lease->epoch_max)
            lease->epoch_max = epoch;
    }
}

int
sb_store_lease_tick (sb_store_t *self, const char *id, int64_t lease_ms, sb_store_lease_t *lease)
{
    memset (lease, 0, sizeof *lease);
    if (sb_store_ensure (self) != 0)
        return -1;
    char ms[24];
    snprintf (ms, sizeof ms, "%" PRId64, lease_ms);
    int rc = -1;
    PGresult *r = NULL;
    if (sb_store_exec_ok (self, "BEGIN", "begin lease tick") != 0)
        return -1;
    const char *alive[] = {self->instance, id};
    if (!(r = sb_store_exec (self, s_alive_sql, 2, alive, PGRES_COMMAND_OK, "dispatcher alive")))
        goto done;
    PQclear (r);
    const char *renew[] = {self->instance, ms};
    if (!(r = sb_store_exec (self, s_renew_sql, 2, renew, PGRES_TUPLES_OK, "renew leases")))
        goto done;
    s_held_rows (r, lease);
    PQclear (r);
    const char *live_params[] = {ms};
    if (!(r = sb_store_exec (self, s_live_sql, 1, live_params, PGRES_TUPLES_OK,
                             "live dispatchers")))
        goto done;
    size_t live = (size_t) PQntuples (r), rank = live;
    for (size_t i = 0; i < live; i++)
        if (strcmp (PQgetvalue (r, (int) i, 0), self->instance) == 0)
            rank = i;
    PQclear (r);
    lease->live = live;
    lease->target = sb_partition_target (live, rank);
    if (lease->owned < lease->target) {
        char want[16];
        snprintf (want, sizeof want, "%d", lease->target - lease->owned);
        const char *take[] = {self->instance, id, want, ms};
        if (!(r = sb_store_exec (self, s_take_sql, 4, take, PGRES_TUPLES_OK, "take partitions")))
            goto done;
        int before = lease->owned;
        s_held_rows (r, lease);
        lease->taken = lease->owned - before;
        PQclear (r);
    }
    else if (lease->owned > lease->target) {
        int give[SB_PARTITIONS];
        size_t n =
            sb_partition_surplus (lease->held, (size_t) (lease->owned - lease->target), give);
        if (n > 0) {
            char list[SB_PARTITIONS * 5 + 3];
            size_t used = (size_t) snprintf (list, sizeof list, "{");
            for (size_t i = 0; i < n; i++)
                used += (size_t) snprintf (list + used, sizeof list - used, "%s%d", i ? "," : "",
                                           give[i]);
            snprintf (list + used, sizeof list - used, "}");
            const char *params[] = {self->instance, list};
            if (!(r = sb_store_exec (self, s_give_sql, 2, params, PGRES_TUPLES_OK,
                                     "give up partitions")))
                goto done;
            for (int row = 0; row < PQntuples (r); row++) {
                int64_t part = -1;
                sb_store_parse_int64 (PQgetvalue (r, row, 0), &part);
                if (part >= 0 && part < SB_PARTITIONS && lease->held[part]) {
                    lease->held[part] = false;
                    lease->owned--;
                    lease->given++;
                }
            }
            PQclear (r);
        }
    }
    const char *rec[] = {self->instance};
    if (!(r = sb_store_exec (self, s_recover_sql, 1, rec, PGRES_COMMAND_OK, "recover outbox")))
        goto done;
    int64_t n = 0;
    sb_store_parse_int64 (PQcmdTuples (r), &n);
    lease->recovered = (int) n;
    PQclear (r);
    if (sb_store_exec_ok (self, "COMMIT", "commit lease tick") == 0)
        rc = 0;
done:
    if (rc != 0) {
        if (PQstatus (self->conn) == CONNECTION_OK
            && PQtransactionStatus (self->conn) != PQTRANS_IDLE)
            sb_store_exec_ok (self, "ROLLBACK", "roll back lease tick");
        int64_t keep = lease->epoch_max;
        memset (lease, 0, sizeof *lease);
        lease->epoch_max = keep;
    }
    return rc;
}

int
sb_store_lease_release (sb_store_t *self)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    const char *params[] = {self->instance};
    PGresult *r = sb_store_exec (self,
                                 "WITH d AS (DELETE FROM dispatchers WHERE instance = $1)"
                                 " UPDATE dispatcher_partitions p SET instance = '', owner = '',"
                                 " lease_until = '-infinity' WHERE p.instance = $1"
                                 " AND NOT EXISTS (SELECT 1 FROM outbox o"
                                 " WHERE o.state = 'sending' AND o.part = p.part)",
                                 1, params, PGRES_COMMAND_OK, "release partitions");
    if (!r)
        return -1;
    int64_t n = 0;
    sb_store_parse_int64 (PQcmdTuples (r), &n);
    PQclear (r);
    return (int) n;
}

int64_t
sb_store_fenced (const sb_store_t *self)
{
    return self->fenced;
}
