/*  sb_writer: the ingress's journal writer and publisher, a czmq actor.

    HTTP worker threads hand it the events of one request; it appends them
    to the journal, makes them durable with one fdatasync for every request
    that arrived meanwhile (group commit), answers each request "stored" or
    "not stored", and then publishes the stored events on the PUB socket in
    sequence order. It also keeps the committed watermark for readers of
    the journal (sb_writer_committed_seq), and trims the journal by age and
    size every few seconds, keeping what consumers have not acknowledged
    (sb_writer_hold) up to a hard cap. The PUB socket is the actor's only
    socket: worker threads reach it through a locked queue, not ZeroMQ.
*/
#ifndef SB_WRITER_H_INCLUDED
#define SB_WRITER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb_config.h"
#include "sb_event.h"
#include "sb_journal.h"
#include "sb_metrics.h"
#include "sb_zmq.h"

typedef struct sb_writer_t sb_writer_t;

//  Open the journal (SB_JOURNAL_DIR), bind the PUB socket(s) (SB_PUB)
//  through security (borrowed: CURVE when keys are set, no plaintext on a
//  non-loopback address; it must outlive the writer) and start the actor.
//  NULL when either fails (logged). Caller owns the return value.
sb_writer_t *sb_writer_new (const sb_config_t *config, const sb_zmq_security_t *security,
                            sb_metrics_t *metrics);

//  Stop the actor after the batch it is on, answer requests still queued
//  "not stored", close the journal.
void sb_writer_destroy (sb_writer_t **self_p);

//  True while the journal's last write succeeded, no journal write has
//  been running for more than a few seconds (a hung fdatasync), and the
//  sockets are bound. Any thread.
bool sb_writer_ready (const sb_writer_t *self);

//  The sequence number the next stored event will get, and the epoch.
uint64_t sb_writer_next_seq (const sb_writer_t *self);
const char *sb_writer_epoch (const sb_writer_t *self);

//  The last sequence number made durable (0: none yet): the watermark a
//  journal reader (the replay server) must not read past, since a record
//  above it may still be rolled back. Any thread.
uint64_t sb_writer_committed_seq (const sb_writer_t *self);

//  The journal directory (borrowed), for readers.
const char *sb_writer_journal_dir (const sb_writer_t *self);

//  The first seq the journal still holds (retention removes the oldest
//  segments). Any thread.
uint64_t sb_writer_first_seq (const sb_writer_t *self);

//  Journal retention (SB_JOURNAL_RETAIN_HOURS, SB_JOURNAL_MAX_BYTES) keeps
//  every segment holding a record above acked_seq: the lowest seq the
//  durable consumers seen within SB_CONSUMER_TTL acknowledged, set by the
//  replay server; SB_JOURNAL_NO_HOLD when no consumer holds any. Past
//  SB_JOURNAL_HARD_MAX_BYTES they go anyway. Until first called the writer
//  holds everything (only the hard cap trims). Any thread.
void sb_writer_hold (sb_writer_t *self, uint64_t acked_seq);

//  One per thread that stores events. It holds no socket (requests go
//  through the writer's locked queue), only that thread's rate limits for
//  the writer's warnings, which are not shared between threads. Caller
//  owns the return value; NULL on failure.
typedef struct sb_writer_client_t sb_writer_client_t;
sb_writer_client_t *sb_writer_client_new (sb_writer_t *writer);
void sb_writer_client_destroy (sb_writer_client_t **self_p);

//  Store count events as one unit (all or none), waiting until they are
//  durable. The events are encoded here and the journaled copies get
//  their seq and id (events itself is not changed); *first_seq gets the
//  first seq. started_us (sb_time_mono_us) is when the request began: the
//  whole wait is bounded from then, allowing at least 1 s from the call.
//  SB_JOURNAL_NOT_STORED when out of memory, when the journal failed, or
//  when the writer did not take the request within 10 s (it is then
//  withdrawn, never written). A request the writer took is answered when
//  its commit's verdict comes, or at 14 s, just under the providers' own
//  timeout: NOT_STORED although the events may still be stored (logged;
//  PostgreSQL dedupes the provider's retry).
sb_journal_result_t sb_writer_client_store (sb_writer_client_t *self, sb_event_t *const *events,
                                            size_t count, int64_t started_us, uint64_t *first_seq);

#endif
