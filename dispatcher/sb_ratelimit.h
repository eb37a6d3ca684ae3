/*  sb_ratelimit: the providers' send limits, kept by the delivery actor:
    a token bucket per sender (a Meta phone number id, a Twilio From
    number) and a backoff per (sender, recipient) pair after Meta's pair
    rate limit (131056). Pure: the caller passes the time, nothing locks,
    and both tables have a bound.
*/
#ifndef SB_RATELIMIT_H_INCLUDED
#define SB_RATELIMIT_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct sb_ratelimit_t sb_ratelimit_t;

//  The first backoff of a pair after a 131056, and the longest: Meta's
//  pair rate is about one message every 6 seconds; each hit in a row
//  doubles the wait.
#define SB_RATELIMIT_PAIR_BASE_MS 6000
#define SB_RATELIMIT_PAIR_MAX_MS 60000

//  At most max_senders buckets and max_pairs backoffs (each at least 1).
//  Caller owns the return value; NULL when out of memory.
sb_ratelimit_t *sb_ratelimit_new (size_t max_senders, size_t max_pairs);
void sb_ratelimit_destroy (sb_ratelimit_t **self_p);

//  Take one token from sender's bucket at now_ms: rate tokens a second,
//  holding at most a tenth of a second's worth (at least one), so no
//  second sees more than rate plus that tenth. rate 0 is no limit.
//  Returns 0 when taken, else the milliseconds until a token is there.
int64_t sb_ratelimit_take (sb_ratelimit_t *self, const char *sender, int64_t rate, int64_t now_ms);

//  The pair (sender, recipient) hit its limit at now_ms: back it off
//  (SB_RATELIMIT_PAIR_BASE_MS, doubling per hit in a row, up to
//  SB_RATELIMIT_PAIR_MAX_MS, or retry_after_ms when longer). Returns the
//  wait set, in ms.
int64_t sb_ratelimit_pair_hit (sb_ratelimit_t *self, const char *sender, const char *recipient,
                               int64_t retry_after_ms, int64_t now_ms);

//  Milliseconds the pair must still wait at now_ms (0: it may send).
int64_t sb_ratelimit_pair_wait (sb_ratelimit_t *self, const char *sender, const char *recipient,
                                int64_t now_ms);

//  A send of the pair went through: its backoff starts over.
void sb_ratelimit_pair_ok (sb_ratelimit_t *self, const char *sender, const char *recipient);

//  Buckets and backoffs held now (for the tests and /metrics).
size_t sb_ratelimit_senders (const sb_ratelimit_t *self);
size_t sb_ratelimit_pairs (const sb_ratelimit_t *self);
//  Buckets still in use dropped to make room for a new sender.
size_t sb_ratelimit_evicted (const sb_ratelimit_t *self);

#endif
