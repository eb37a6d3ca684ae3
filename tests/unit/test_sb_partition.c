/*  test_sb_partition: the pure parts of sharing the outbox among several
    dispatchers: the conversation hash (FNV-1a, its published test
    values), the spread of real-looking conversations over the 256
    partitions, every dispatcher's share, the surplus given up, and the
    default dispatcher id. The leases themselves are in test_sb_store.c
    (test_leases), against a real PostgreSQL.
*/
#include "sb_partition.h"

#include <stdio.h>
#include <string.h>

#include "sb_check.h"

//  FNV-1a of one string: the hash of a conversation whose other fields are
//  empty is FNV-1a of NUL NUL NUL NUL s; these check the algorithm itself
//  on its published values (the FNV test suite of draft-eastlake-fnv,
//  "FNV32a": "" 0x811c9dc5, "a" 0xe40c292c, "foobar" 0xbf9cf968), by
//  unrolling the four leading NULs the way sb_partition_hash does.
static uint32_t
s_fnv1a (const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char) s[i];
        h *= 16777619u;
    }
    return h;
}

static void
test_hash (void)
{
    CHECK_EQ (s_fnv1a ("", 0), 0x811c9dc5u);
    CHECK_EQ (s_fnv1a ("a", 1), 0xe40c292cu);
    CHECK_EQ (s_fnv1a ("foobar", 6), 0xbf9cf968u);
    //  The fields joined by NUL bytes, NULL as "".
    CHECK_EQ (sb_partition_hash ("twilio", "sms", "", "+15558675310", "+14155550100"),
              s_fnv1a ("twilio\0sms\0\0+15558675310\0+14155550100", 37));
    CHECK_EQ (sb_partition_hash (NULL, NULL, NULL, NULL, "a"), s_fnv1a ("\0\0\0\0a", 5));
    CHECK_EQ (sb_partition_hash ("", "", "", "", ""), s_fnv1a ("\0\0\0\0", 4));
    //  A field boundary moved is another conversation.
    CHECK (sb_partition_hash ("meta", "whatsapp", "1", "23", "x")
           != sb_partition_hash ("meta", "whatsapp", "12", "3", "x"));
    for (uint32_t h = 0; h < 1000; h += 37)
        CHECK_INT (sb_partition_of (h), (int) (h % 256));
    CHECK_INT (sb_partition_of (UINT32_MAX), 255);
}

//  20,000 contacts of consecutive phone numbers writing to one number:
//  every partition gets some, none more than twice its even share.
static void
test_spread (void)
{
    enum { N = 20000 };
    int count[SB_PARTITIONS] = {0};
    for (int i = 0; i < N; i++) {
        char phone[32];
        snprintf (phone, sizeof phone, "+1415555%04d", i % 10000);
        const char *channel = i < 10000 ? "sms" : "whatsapp";
        count[sb_partition_of (sb_partition_hash ("twilio", channel, "", "+15558675310", phone))]++;
    }
    int least = N, most = 0;
    for (int p = 0; p < SB_PARTITIONS; p++) {
        least = count[p] < least ? count[p] : least;
        most = count[p] > most ? count[p] : most;
    }
    CHECK (least > N / SB_PARTITIONS / 2);
    CHECK (most < 2 * N / SB_PARTITIONS);
}

//  Shares add up to 256 for any number of dispatchers, differ by at most
//  one, and the first ranks take the remainder.
static void
test_target (void)
{
    CHECK_INT (sb_partition_target (0, 0), 0);
    CHECK_INT (sb_partition_target (1, 0), 256);
    CHECK_INT (sb_partition_target (1, 1), 0);
    CHECK_INT (sb_partition_target (3, 0), 86);
    CHECK_INT (sb_partition_target (3, 1), 85);
    CHECK_INT (sb_partition_target (3, 2), 85);
    CHECK_INT (sb_partition_target (300, 255), 1);
    CHECK_INT (sb_partition_target (300, 256), 0);
    for (size_t live = 1; live <= 300; live++) {
        int sum = 0, least = 1000, most = 0;
        for (size_t rank = 0; rank < live; rank++) {
            int t = sb_partition_target (live, rank);
            sum += t;
            least = t < least ? t : least;
            most = t > most ? t : most;
        }
        CHECK_INT (sum, 256);
        CHECK (most - least <= 1);
    }
}

static void
test_surplus (void)
{
    bool held[SB_PARTITIONS] = {false};
    int out[SB_PARTITIONS];
    CHECK_EQ (sb_partition_surplus (held, 5, out), 0);
    held[3] = held[10] = held[200] = true;
    CHECK_EQ (sb_partition_surplus (held, 2, out), 2);
    CHECK_INT (out[0], 200);
    CHECK_INT (out[1], 10);
    CHECK_EQ (sb_partition_surplus (held, 9, out), 3);
    CHECK_INT (out[2], 3);
    CHECK_EQ (sb_partition_surplus (held, 0, out), 0);
}

static void
test_default_id (void)
{
    char id[SB_PARTITION_ID_SIZE];
    sb_partition_default_id (id, sizeof id, "box1", 0xdeadbeef);
    CHECK_STR (id, "box1-deadbeef");
    sb_partition_default_id (id, sizeof id, "", 1);
    CHECK_STR (id, "dispatcher-00000001");
    char host[200];
    memset (host, 'h', sizeof host - 1);
    host[sizeof host - 1] = 0;
    sb_partition_default_id (id, sizeof id, host, 2);
    CHECK_EQ (strlen (id), SB_PARTITION_ID_SIZE - 1);
    CHECK_STR (id + strlen (id) - 9, "-00000002");
}

//  The held set the delivery actor writes and the ingest actor reads:
//  every partition, each word's first and last bit, round trip exactly.
static void
test_set (void)
{
    sb_partition_set_t set = {.known = false};
    bool held[SB_PARTITIONS], got[SB_PARTITIONS];
    CHECK_EQ (sb_partition_set_load (&set, got), false);
    sb_partition_set_store (&set, NULL);
    CHECK_EQ (sb_partition_set_load (&set, got), true);
    int n = 0;
    for (int p = 0; p < SB_PARTITIONS; p++)
        n += got[p];
    CHECK_EQ (n, 0);
    for (int p = 0; p < SB_PARTITIONS; p++)
        held[p] = p % 3 == 0 || p % 64 == 63;
    sb_partition_set_store (&set, held);
    sb_partition_set_load (&set, got);
    int same = 0;
    for (int p = 0; p < SB_PARTITIONS; p++)
        same += got[p] == held[p];
    CHECK_EQ (same, SB_PARTITIONS);
    CHECK_EQ (got[255], true);
    CHECK_EQ (got[64], false);
}

int
main (void)
{
    test_hash ();
    test_spread ();
    test_target ();
    test_surplus ();
    test_default_id ();
    test_set ();
    return s_failures ? 1 : 0;
}
