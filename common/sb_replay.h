/*  sb_replay: the codec of the journal replay protocol
    (proto/switchboard/v1/replay.proto, described in proto/README.md).

    One ZeroMQ frame holds one ReplayMessage. sb_replay_msg_t is a flat view
    of it: the type says which fields mean something. Decoding checks
    everything a hostile peer could send (size, exactly one body, id and
    epoch characters and lengths, sequence numbers, credit, record size), so
    a decoded message can be used without further checks; encoding checks
    the same rules, so a peer never receives what it would refuse.

    Only this module sees the protobuf-c generated code of the protocol.
*/
#ifndef SB_REPLAY_H_INCLUDED
#define SB_REPLAY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb_journal.h"

typedef enum {
    SB_REPLAY_HELLO = 1,  //  consumer -> ingress: consumer_id
    SB_REPLAY_WELCOME,    //  ingress -> consumer: ingress_id, epoch, committed_seq
    SB_REPLAY_REQUEST,    //  consumer -> ingress: replay_id, consumer_id, epoch, from_seq,
                          //  credit, count
    SB_REPLAY_START,      //  ingress -> consumer: replay_id, ingress_id, epoch, from_seq,
                          //  committed_seq
    SB_REPLAY_RECORD,     //  ingress -> consumer: replay_id, seq, event
    SB_REPLAY_CREDIT,     //  consumer -> ingress: replay_id, credit
    SB_REPLAY_CANCEL,     //  consumer -> ingress: replay_id
    SB_REPLAY_END,        //  ingress -> consumer: replay_id, reason, last_seq, committed_seq,
                          //  epoch
    SB_REPLAY_ACK,        //  consumer -> ingress: consumer_id, epoch, committed_seq
} sb_replay_type_t;

//  Why a replay ended (ReplayEndReason). Decoding accepts any non-zero
//  value, so a newer ingress's reasons reach an older consumer as numbers.
typedef enum {
    SB_REPLAY_END_CAUGHT_UP = 1,  //  every durable record from from_seq was sent
    SB_REPLAY_END_COUNT = 2,      //  the request's count was reached
    SB_REPLAY_END_CANCELLED = 3,  //  the consumer cancelled
    SB_REPLAY_END_ERROR = 4,      //  the journal could not be read
    SB_REPLAY_END_BUSY = 5,       //  too many replays in progress
    SB_REPLAY_END_UNKNOWN = 6,    //  credit or cancel for a replay the ingress does not have
    SB_REPLAY_END_TIMEOUT = 7,    //  the consumer took nothing (no credit, full queue) for seconds
} sb_replay_reason_t;

//  Longest consumer or ingress id; ids are [A-Za-z0-9._:@-].
#define SB_REPLAY_ID_MAX 64
//  Longest epoch; epochs are hex digits (the journal's are 32).
#define SB_REPLAY_EPOCH_MAX 64
//  Most credit one request or credit message may grant.
#define SB_REPLAY_CREDIT_MAX 100000u
//  Largest message an ingress sends (a record of the largest journal record).
#define SB_REPLAY_MAX_MESSAGE ((size_t) SB_JOURNAL_MAX_RECORD + 4096)
//  Largest message a consumer sends (no records): the ingress's cap.
#define SB_REPLAY_MAX_REQUEST 4096

typedef struct {
    sb_replay_type_t type;                   //  which message
    uint64_t replay_id;                      //  REQUEST..END: the consumer's replay id
    char consumer_id[SB_REPLAY_ID_MAX + 1];  //  HELLO, REQUEST ("" allowed), ACK
    char ingress_id[SB_REPLAY_ID_MAX + 1];   //  WELCOME, START (required)
    char epoch[SB_REPLAY_EPOCH_MAX + 1];     //  WELCOME, START, END, ACK; REQUEST ("" allowed)
    uint64_t from_seq;                       //  REQUEST, START: >= 1
    uint64_t seq;                            //  RECORD: >= 1
    uint64_t last_seq;                       //  END: last seq sent, 0 for none
    uint64_t committed_seq;                  //  WELCOME, START, END, ACK
    uint64_t count;                          //  REQUEST: most records, 0 = no limit
    uint32_t credit;                         //  REQUEST (0..MAX), CREDIT (1..MAX)
    int reason;                              //  END: an sb_replay_reason_t, non-zero
    const uint8_t *event;                    //  RECORD: the journaled Event bytes
    size_t event_size;                       //  RECORD: 1..SB_JOURNAL_MAX_RECORD
    void *unpacked;                          //  private: decoded protobuf owning event
} sb_replay_msg_t;

//  Serialize msg after checking it follows the rules decode enforces.
//  Caller owns the return value (free()); NULL (logged at debug) when msg
//  breaks a rule, or out of memory.
uint8_t *sb_replay_encode (const sb_replay_msg_t *msg, size_t *size);

//  Encode msg and send it as one frame on socket (a libzmq socket handle:
//  zsock_resolve of a czmq one) with zmq_send's flags. 0, or -1 when msg
//  breaks a rule or zmq_send failed (zmq_errno says why).
int sb_replay_send (void *socket, const sb_replay_msg_t *msg, int flags);

//  Parse and check bytes from the wire into *msg. 0, or -1 when they are
//  not a valid message (*msg is then cleared and holds nothing to free).
//  On success msg->event borrows from msg: call sb_replay_msg_clear when
//  done.
int sb_replay_decode (const void *data, size_t size, sb_replay_msg_t *msg);

//  Free what a decoded message holds and zero it. Safe on a zeroed or
//  already cleared message.
void sb_replay_msg_clear (sb_replay_msg_t *msg);

//  Copy text into an id or epoch field (truncating): helpers for building
//  messages. The result is checked by encode.
void sb_replay_set (char *field, size_t field_size, const char *text);

//  True when text is a valid id (non-empty, [A-Za-z0-9._:@-], at most
//  SB_REPLAY_ID_MAX), or a valid epoch (non-empty hex, at most
//  SB_REPLAY_EPOCH_MAX).
bool sb_replay_id_valid (const char *text);
bool sb_replay_epoch_valid (const char *text);

//  Lower-case names for logs: "hello", ..., and "caught_up", ... ("unknown"
//  otherwise).
const char *sb_replay_type_name (int type);
const char *sb_replay_reason_name (int reason);

#endif
