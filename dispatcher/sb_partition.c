/*  sb_partition: which outbox partition a conversation falls in, and each
    dispatcher's share of the partitions (see sb_partition.h). Pure
    functions: sb_store_write stamps every outbox row with its
    conversation's hash and partition, and sb_store_lease_tick asks how
    many partitions this dispatcher should hold and which to give up.

    Why this key. One conversation must never be in two partitions, or
    two dispatchers could send its replies at once and out of order. The
    contact's address as the store resolves it (contacts.address: the
    phone number when known, else the BSUID) is the one name a contact has
    at a time, whichever of its identifiers an event carried: an event
    with a BSUID only and one with phone and BSUID resolve to the same
    contact under its row lock, in the same transaction as the decision.
    It changes only when the contact moves or merges (a change of number,
    a phone learnt for a BSUID), and then a trigger moves the contact's
    pending replies to the new hash (0010_dispatcher_partitions.sql). The
    business side (account: Meta's phone_number_id; our address: the
    number written to) makes two of our numbers two conversations, as the
    contact sees them. FNV-1a is simple enough to write again in SQL for
    the rows the database re-keys, and its low byte spreads phone numbers
    evenly (tests/unit/test_sb_partition.c).
*/
#include "sb_partition.h"

#include <stdio.h>
#include <string.h>

#define S_FNV_OFFSET 2166136261u
#define S_FNV_PRIME 16777619u

static uint32_t
s_fnv (uint32_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *) (s ? s : ""); *p; p++) {
        h ^= *p;
        h *= S_FNV_PRIME;
    }
    return h;
}

uint32_t
sb_partition_hash (const char *provider, const char *channel, const char *account,
                   const char *our_addr, const char *contact)
{
    const char *parts[] = {provider, channel, account, our_addr, contact};
    uint32_t h = S_FNV_OFFSET;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (i > 0)
            h *= S_FNV_PRIME;  //  the NUL between two fields: h ^= 0, then multiply
        h = s_fnv (h, parts[i]);
    }
    return h;
}

int
sb_partition_of (uint32_t hash)
{
    return (int) (hash % SB_PARTITIONS);
}

int
sb_partition_target (size_t live, size_t rank)
{
    if (live == 0 || rank >= live)
        return 0;
    return (int) (SB_PARTITIONS / live + (rank < SB_PARTITIONS % live ? 1 : 0));
}

size_t
sb_partition_surplus (const bool *held, size_t count, int *out)
{
    size_t n = 0;
    for (int p = SB_PARTITIONS - 1; p >= 0 && n < count; p--)
        if (held[p])
            out[n++] = p;
    return n;
}

void
sb_partition_default_id (char *id, size_t size, const char *host, uint32_t random_bits)
{
    char suffix[16];
    snprintf (suffix, sizeof suffix, "-%08x", (unsigned) random_bits);
    size_t room = size > strlen (suffix) + 1 ? size - strlen (suffix) - 1 : 0;
    snprintf (id, size, "%.*s%s", (int) room, host && *host ? host : "dispatcher", suffix);
}

void
sb_partition_set_store (sb_partition_set_t *set, const bool *held)
{
    for (size_t w = 0; w < SB_PARTITIONS / 64; w++) {
        uint64_t bits = 0;
        for (size_t b = 0; b < 64; b++)
            if (held && held[w * 64 + b])
                bits |= (uint64_t) 1 << b;
        atomic_store (&set->bits[w], bits);
    }
    atomic_store (&set->known, true);
}

bool
sb_partition_set_load (const sb_partition_set_t *set, bool *held)
{
    bool known = atomic_load (&((sb_partition_set_t *) set)->known);
    for (size_t w = 0; w < SB_PARTITIONS / 64; w++) {
        uint64_t bits = atomic_load (&((sb_partition_set_t *) set)->bits[w]);
        for (size_t b = 0; b < 64; b++)
            held[w * 64 + b] = known && ((bits >> b) & 1);
    }
    return known;
}
