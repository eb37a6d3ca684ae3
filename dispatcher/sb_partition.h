/*  sb_partition: the pure parts of sharing the outbox among several
    dispatchers: which partition a conversation falls in, and how many
    partitions each live dispatcher should hold. No database, no clock;
    the leases themselves are sb_store_lease (sb_store.h), run by the
    delivery actor (docs/internals.md, "Several dispatchers").
*/
#ifndef SB_PARTITION_H_INCLUDED
#define SB_PARTITION_H_INCLUDED

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Partitions of the outbox: fixed, the rows of dispatcher_partitions.
#define SB_PARTITIONS 256

//  Room for a dispatcher id (SB_DISPATCHER_ID), NUL included.
#define SB_PARTITION_ID_SIZE 64

//  A conversation's hash: FNV-1a (32 bits) of provider, channel, account,
//  our address and the contact's address as the store resolves it, joined
//  by NUL bytes (NULL counts as ""). The SQL function sb_conv_hash
//  (0010_dispatcher_partitions.sql) computes the same value.
uint32_t sb_partition_hash (const char *provider, const char *channel, const char *account,
                            const char *our_addr, const char *contact);

//  The partition of a conversation hash: 0 .. SB_PARTITIONS - 1.
int sb_partition_of (uint32_t hash);

//  How many partitions the dispatcher at rank (0-based, in the order of
//  the live dispatchers' ids) should hold when live dispatchers are alive:
//  an even share, the first SB_PARTITIONS % live one more. 0 when rank is
//  not among them.
int sb_partition_target (size_t live, size_t rank);

//  Of the held partitions (held[p], SB_PARTITIONS of them), choose up to
//  count to give up, the highest numbers first (a new dispatcher's take
//  starts at the lowest free). Writes their numbers into out; returns how
//  many.
size_t sb_partition_surplus (const bool *held, size_t count, int *out);

//  A default dispatcher id: host name (cut to fit), "-" and 8 hex digits
//  of random, into id (SB_PARTITION_ID_SIZE). The random part comes from
//  random_bits.
void sb_partition_default_id (char *id, size_t size, const char *host, uint32_t random_bits);

//  The partitions a dispatcher holds, as its delivery actor last learnt
//  them (sb_store_lease_tick), for its ingest actor to read: one writer,
//  any readers, no lock. A read may mix two writes; the ingest only takes
//  it as a hint of which events to store (a partition it stores without
//  holding costs duplicates at most, one it skips is replayed by
//  whoever holds it), so no mix can lose or double anything.
typedef struct {
    _Atomic uint64_t bits[SB_PARTITIONS / 64];
    atomic_bool known;  //  a lease tick has stored the set once
} sb_partition_set_t;

//  Store held (NULL: none); the set is known from then on.
void sb_partition_set_store (sb_partition_set_t *set, const bool *held);
//  Load it into held; false (held all false) while it is not known yet.
bool sb_partition_set_load (const sb_partition_set_t *set, bool *held);

#endif
