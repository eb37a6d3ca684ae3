/*  sb_ratelimit: token buckets per sender, backoffs per (sender,
    recipient) pair, in two bounded tables (czmq zhashx, keyed by text).

    A bucket refills at its rate and holds a tenth of a second's worth (at
    least one token): small bursts only, so that a provider counting by the
    second never sees more than the rate plus that tenth. A bucket that is
    full again is the same as no bucket, so a full table first drops one
    of those, and only when every bucket is in use the least recently used
    one (which may then allow a burst of a tenth of a second more than the
    rate: counted in `evicted`, not silent). A pair backoff that has run
    out is dropped first in the same way, else the one ending soonest.

    Limits: the caller's clock must not go backwards (monotonic ms); a
    table search on eviction walks the table (at most its bound, and only
    when a new key arrives into a full table).
*/
#include "sb_ratelimit.h"

#include <assert.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "sb_text.h"

typedef struct {
    double tokens;    //  tokens held as of at_ms
    int64_t at_ms;    //  when tokens was last brought up to date
    int64_t rate;     //  tokens a second, as of the last take
    int64_t used_ms;  //  last take, for the least-recently-used eviction
} s_bucket_t;

typedef struct {
    int64_t until_ms;  //  the pair may send from then
    int hits;          //  131056 answers in a row
} s_pair_t;

struct sb_ratelimit_t {
    zhashx_t *buckets;   //  sender -> s_bucket_t
    zhashx_t *pairs;     //  sender \x1f recipient -> s_pair_t
    size_t max_senders;  //  bound of buckets
    size_t max_pairs;    //  bound of pairs
    size_t evicted;      //  buckets in use dropped for room
};

static void
s_item_free (void **item)
{
    free (*item);
    *item = NULL;
}

sb_ratelimit_t *
sb_ratelimit_new (size_t max_senders, size_t max_pairs)
{
    sb_ratelimit_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->max_senders = max_senders ? max_senders : 1;
    self->max_pairs = max_pairs ? max_pairs : 1;
    self->buckets = zhashx_new ();
    self->pairs = zhashx_new ();
    if (!self->buckets || !self->pairs) {
        sb_ratelimit_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->buckets, s_item_free);
    zhashx_set_destructor (self->pairs, s_item_free);
    return self;
}

void
sb_ratelimit_destroy (sb_ratelimit_t **self_p)
{
    assert (self_p);
    sb_ratelimit_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->buckets);
    zhashx_destroy (&self->pairs);
    free (self);
    *self_p = NULL;
}

static double
s_capacity (int64_t rate)
{
    return rate >= 10 ? (double) rate / 10.0 : 1.0;
}

//  Bring the bucket's tokens up to now_ms.
static void
s_refill (s_bucket_t *bucket, int64_t now_ms)
{
    if (now_ms > bucket->at_ms) {
        bucket->tokens += (double) (now_ms - bucket->at_ms) * (double) bucket->rate / 1000.0;
        bucket->at_ms = now_ms;
    }
    double cap = s_capacity (bucket->rate);
    if (bucket->tokens > cap)
        bucket->tokens = cap;
}

//  Room for one more bucket: drop a full one, else the least recently used.
static void
s_buckets_make_room (sb_ratelimit_t *self, int64_t now_ms)
{
    const char *victim = NULL;
    int64_t oldest = INT64_MAX;
    for (s_bucket_t *b = zhashx_first (self->buckets); b; b = zhashx_next (self->buckets)) {
        s_refill (b, now_ms);
        if (b->tokens >= s_capacity (b->rate)) {
            victim = zhashx_cursor (self->buckets);
            oldest = INT64_MIN;
            break;
        }
        if (b->used_ms < oldest) {
            oldest = b->used_ms;
            victim = zhashx_cursor (self->buckets);
        }
    }
    if (!victim)
        return;
    if (oldest != INT64_MIN)
        self->evicted++;
    char *key = strdup (victim);  //  the cursor dies with the item
    if (key)
        zhashx_delete (self->buckets, key);
    free (key);
}

int64_t
sb_ratelimit_take (sb_ratelimit_t *self, const char *sender, int64_t rate, int64_t now_ms)
{
    assert (self && sender);
    if (rate <= 0)
        return 0;
    s_bucket_t *bucket = zhashx_lookup (self->buckets, sender);
    if (!bucket) {
        if (zhashx_size (self->buckets) >= self->max_senders)
            s_buckets_make_room (self, now_ms);
        bucket = calloc (1, sizeof *bucket);
        if (!bucket)
            return 0;  //  out of memory: send rather than hold a row for ever
        bucket->tokens = s_capacity (rate);
        bucket->at_ms = now_ms;
        bucket->rate = rate;
        if (zhashx_insert (self->buckets, sender, bucket)) {
            free (bucket);
            return 0;
        }
    }
    bucket->rate = rate;
    bucket->used_ms = now_ms;
    s_refill (bucket, now_ms);
    if (bucket->tokens >= 1.0) {
        bucket->tokens -= 1.0;
        return 0;
    }
    int64_t wait = (int64_t) ((1.0 - bucket->tokens) * 1000.0 / (double) rate) + 1;
    return wait > 0 ? wait : 1;
}

//  The pairs' key, sender and recipient joined by a unit separator (an
//  address never holds one). Caller owns the return value.
static char *
s_pair_key (const char *sender, const char *recipient)
{
    return sb_text_join (sender, "\x1f", recipient, NULL);
}

static void
s_pairs_make_room (sb_ratelimit_t *self, int64_t now_ms)
{
    const char *victim = NULL;
    int64_t soonest = INT64_MAX;
    for (s_pair_t *p = zhashx_first (self->pairs); p; p = zhashx_next (self->pairs)) {
        if (p->until_ms <= now_ms) {
            victim = zhashx_cursor (self->pairs);
            break;
        }
        if (p->until_ms < soonest) {
            soonest = p->until_ms;
            victim = zhashx_cursor (self->pairs);
        }
    }
    char *key = victim ? strdup (victim) : NULL;
    if (key)
        zhashx_delete (self->pairs, key);
    free (key);
}

int64_t
sb_ratelimit_pair_hit (sb_ratelimit_t *self, const char *sender, const char *recipient,
                       int64_t retry_after_ms, int64_t now_ms)
{
    assert (self && sender && recipient);
    char *key = s_pair_key (sender, recipient);
    if (!key)
        return SB_RATELIMIT_PAIR_BASE_MS;
    s_pair_t *pair = zhashx_lookup (self->pairs, key);
    if (!pair) {
        if (zhashx_size (self->pairs) >= self->max_pairs)
            s_pairs_make_room (self, now_ms);
        pair = calloc (1, sizeof *pair);
        if (pair && zhashx_insert (self->pairs, key, pair)) {
            free (pair);
            pair = NULL;
        }
    }
    int hits = pair ? ++pair->hits : 1;
    int64_t wait = SB_RATELIMIT_PAIR_BASE_MS;
    for (int i = 1; i < hits && wait < SB_RATELIMIT_PAIR_MAX_MS; i++)
        wait *= 2;
    if (wait > SB_RATELIMIT_PAIR_MAX_MS)
        wait = SB_RATELIMIT_PAIR_MAX_MS;
    if (retry_after_ms > wait)
        wait = retry_after_ms;
    if (pair)
        pair->until_ms = now_ms + wait;
    free (key);
    return wait;
}

int64_t
sb_ratelimit_pair_wait (sb_ratelimit_t *self, const char *sender, const char *recipient,
                        int64_t now_ms)
{
    assert (self && sender && recipient);
    if (zhashx_size (self->pairs) == 0)
        return 0;
    char *key = s_pair_key (sender, recipient);
    s_pair_t *pair = key ? zhashx_lookup (self->pairs, key) : NULL;
    free (key);
    return pair && pair->until_ms > now_ms ? pair->until_ms - now_ms : 0;
}

void
sb_ratelimit_pair_ok (sb_ratelimit_t *self, const char *sender, const char *recipient)
{
    assert (self && sender && recipient);
    if (zhashx_size (self->pairs) == 0)
        return;
    char *key = s_pair_key (sender, recipient);
    if (key)
        zhashx_delete (self->pairs, key);
    free (key);
}

size_t
sb_ratelimit_senders (const sb_ratelimit_t *self)
{
    assert (self);
    return zhashx_size (self->buckets);
}

size_t
sb_ratelimit_pairs (const sb_ratelimit_t *self)
{
    assert (self);
    return zhashx_size (self->pairs);
}

size_t
sb_ratelimit_evicted (const sb_ratelimit_t *self)
{
    assert (self);
    return self->evicted;
}
