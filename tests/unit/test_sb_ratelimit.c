/*  test_sb_ratelimit: the send limits the delivery actor keeps: a token
    bucket per sender (its rate held second by second, a tenth of a second
    of burst, senders apart), the backoff of a (sender, recipient) pair
    after Meta's 131056 (only that pair, doubling, capped, over by a
    success), and the bounds of both tables. The clock is the test's.
*/
#include "sb_ratelimit.h"

#include <stdio.h>

#include "sb_check.h"

//  Sends a sender gets through in each of `seconds` seconds when it asks
//  every millisecond; the most in any one second.
static int64_t
s_most_per_second (sb_ratelimit_t *rl, const char *sender, int64_t rate, int64_t start, int seconds,
                   int64_t *total)
{
    int64_t most = 0;
    *total = 0;
    for (int s = 0; s < seconds; s++) {
        int64_t count = 0;
        for (int64_t ms = 0; ms < 1000; ms++)
            if (sb_ratelimit_take (rl, sender, rate, start + s * 1000 + ms) == 0)
                count++;
        if (count > most)
            most = count;
        *total += count;
    }
    return most;
}

static void
test_bucket (void)
{
    sb_ratelimit_t *rl = sb_ratelimit_new (16, 16);
    CHECK (rl);
    //  80 a second: the first second has the burst (8) on top; after that
    //  exactly the rate, and no second above rate + rate/10.
    int64_t total;
    int64_t most = s_most_per_second (rl, "meta:106540352242922", 80, 1000, 10, &total);
    CHECK (most <= 88);
    CHECK (total >= 80 * 10 - 1 && total <= 80 * 10 + 8);
    //  The wait it names is when a token is back.
    sb_ratelimit_t *one = sb_ratelimit_new (4, 4);
    CHECK_INT (sb_ratelimit_take (one, "s", 2, 0), 0);  //  the one token of a rate below 10
    int64_t wait = sb_ratelimit_take (one, "s", 2, 0);
    CHECK (wait >= 499 && wait <= 501);
    CHECK (sb_ratelimit_take (one, "s", 2, wait - 2) > 0);
    CHECK_INT (sb_ratelimit_take (one, "s", 2, wait), 0);
    //  Rate 0 is no limit, and keeps no bucket.
    for (int i = 0; i < 1000; i++)
        CHECK_INT (sb_ratelimit_take (one, "twilio:+15005550006", 0, 0), 0);
    CHECK_EQ (sb_ratelimit_senders (one), 1u);
    //  Senders are apart: one at its limit does not hold another back.
    int64_t t = 5000;
    while (sb_ratelimit_take (rl, "meta:A", 10, t) == 0)
        ;
    CHECK (sb_ratelimit_take (rl, "meta:A", 10, t) > 0);
    CHECK_INT (sb_ratelimit_take (rl, "meta:B", 10, t), 0);
    sb_ratelimit_destroy (&one);
    sb_ratelimit_destroy (&rl);
    CHECK (rl == NULL);
    sb_ratelimit_destroy (&rl);  //  a second destroy does nothing
}

static void
test_bucket_bound (void)
{
    sb_ratelimit_t *rl = sb_ratelimit_new (4, 4);
    char name[32];
    //  Many senders, each sending once and then idle long enough to be
    //  full again: the table stays at its bound and nothing in use goes.
    for (int i = 0; i < 1000; i++) {
        snprintf (name, sizeof name, "meta:%d", i);
        CHECK_INT (sb_ratelimit_take (rl, name, 80, (int64_t) i * 1000), 0);
        CHECK (sb_ratelimit_senders (rl) <= 4);
    }
    CHECK_EQ (sb_ratelimit_evicted (rl), 0u);
    //  Five senders all at their limit at once: one in use must go, and
    //  it is counted.
    for (int i = 0; i < 5; i++) {
        snprintf (name, sizeof name, "busy:%d", i);
        while (sb_ratelimit_take (rl, name, 10, 2000000) == 0)
            ;
    }
    CHECK (sb_ratelimit_senders (rl) <= 4);
    CHECK (sb_ratelimit_evicted (rl) >= 1);
    sb_ratelimit_destroy (&rl);
}

static void
test_pair (void)
{
    sb_ratelimit_t *rl = sb_ratelimit_new (4, 8);
    const char *number = "meta:106540352242922";
    CHECK_INT (sb_ratelimit_pair_wait (rl, number, "16505551234", 0), 0);
    //  A 131056 backs off that pair only.
    CHECK_INT (sb_ratelimit_pair_hit (rl, number, "16505551234", -1, 1000),
               SB_RATELIMIT_PAIR_BASE_MS);
    CHECK_INT (sb_ratelimit_pair_wait (rl, number, "16505551234", 1000), SB_RATELIMIT_PAIR_BASE_MS);
    CHECK_INT (sb_ratelimit_pair_wait (rl, number, "16505551235", 1000), 0);
    CHECK_INT (sb_ratelimit_pair_wait (rl, "meta:999", "16505551234", 1000), 0);
    //  ... and not the sender's bucket.
    CHECK_INT (sb_ratelimit_take (rl, number, 80, 1000), 0);
    CHECK_INT (sb_ratelimit_pair_wait (rl, number, "16505551234", 1000 + SB_RATELIMIT_PAIR_BASE_MS),
               0);
    //  Hits in a row double the wait, up to the cap; a Retry-After longer wins.
    CHECK_INT (sb_ratelimit_pair_hit (rl, number, "16505551234", -1, 10000),
               2 * SB_RATELIMIT_PAIR_BASE_MS);
    CHECK_INT (sb_ratelimit_pair_hit (rl, number, "16505551234", -1, 30000),
               4 * SB_RATELIMIT_PAIR_BASE_MS);
    for (int i = 0; i < 10; i++)
        sb_ratelimit_pair_hit (rl, number, "16505551234", -1, 60000);
    CHECK_INT (sb_ratelimit_pair_wait (rl, number, "16505551234", 60000), SB_RATELIMIT_PAIR_MAX_MS);
    CHECK_INT (sb_ratelimit_pair_hit (rl, number, "16505551234", 120000, 60000), 120000);
    //  A success starts it over.
    sb_ratelimit_pair_ok (rl, number, "16505551234");
    CHECK_INT (sb_ratelimit_pair_wait (rl, number, "16505551234", 60000), 0);
    CHECK_INT (sb_ratelimit_pair_hit (rl, number, "16505551234", -1, 60000),
               SB_RATELIMIT_PAIR_BASE_MS);
    sb_ratelimit_destroy (&rl);
}

static void
test_pair_bound (void)
{
    sb_ratelimit_t *rl = sb_ratelimit_new (1, 3);
    char to[32];
    for (int i = 0; i < 3; i++) {
        snprintf (to, sizeof to, "1650555%04d", i);
        sb_ratelimit_pair_hit (rl, "meta:1", to, -1, (int64_t) i * 100);
    }
    CHECK_EQ (sb_ratelimit_pairs (rl), 3u);
    //  A fourth pair while all three wait: the one ending soonest (the
    //  first) goes, the others keep their backoff.
    sb_ratelimit_pair_hit (rl, "meta:1", "16505559999", -1, 300);
    CHECK_EQ (sb_ratelimit_pairs (rl), 3u);
    CHECK_INT (sb_ratelimit_pair_wait (rl, "meta:1", "16505550000", 300), 0);
    CHECK (sb_ratelimit_pair_wait (rl, "meta:1", "16505550002", 300) > 0);
    CHECK (sb_ratelimit_pair_wait (rl, "meta:1", "16505559999", 300) > 0);
    //  Thousands of pairs: the table never passes its bound.
    for (int i = 0; i < 5000; i++) {
        snprintf (to, sizeof to, "1777%07d", i);
        sb_ratelimit_pair_hit (rl, "meta:1", to, -1, 1000 + i);
        CHECK (sb_ratelimit_pairs (rl) <= 3);
    }
    sb_ratelimit_destroy (&rl);
}

int
main (void)
{
    test_bucket ();
    test_bucket_bound ();
    test_pair ();
    test_pair_bound ();
    return s_failures ? 1 : 0;
}
