/*  sb_replay: encode and decode the replay protocol's messages.

    The wire form is one switchboard.v1.ReplayMessage (protobuf-c) per
    ZeroMQ frame; the flat sb_replay_msg_t keeps protobuf-c out of the
    services. Both directions go through one rule book, s_check: what encode
    refuses, decode refuses too, so a well-behaved peer never sends what the
    other side drops.

    Decoding outside bytes: the size is capped (SB_REPLAY_MAX_MESSAGE) before
    protobuf-c sees them; protobuf-c checks the wire format; then exactly one
    body must be set, ids and epochs must be short and of a safe alphabet
    (they end up in log lines and metric labels), sequence numbers and credit
    must be in range, and a record must carry an Event of a size the journal
    could hold. Unknown fields are ignored, as protobuf does.

    Limits: a decoded record's event bytes are protobuf-c's copy, owned by
    the message until sb_replay_msg_clear.
*/
#include "sb_replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sb_log.h"
#include "sb_text.h"
#include "switchboard/v1/replay.pb-c.h"

typedef Switchboard__V1__ReplayMessage s_pb_t;

bool
sb_replay_id_valid (const char *text)
{
    size_t len = 0;
    for (const char *p = text; *p; p++, len++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
              || c == '_' || c == ':' || c == '@' || c == '-'))
            return false;
    }
    return len >= 1 && len <= SB_REPLAY_ID_MAX;
}

bool
sb_replay_epoch_valid (const char *text)
{
    size_t len = 0;
    for (const char *p = text; *p; p++, len++) {
        if (sb_text_hex_value ((unsigned char) *p) < 0)
            return false;
    }
    return len >= 1 && len <= SB_REPLAY_EPOCH_MAX;
}

void
sb_replay_set (char *field, size_t field_size, const char *text)
{
    snprintf (field, field_size, "%s", text ? text : "");
}

const char *
sb_replay_type_name (int type)
{
    static const char *names[] = {"unknown", "hello",  "welcome", "request", "start",
                                  "record",  "credit", "cancel",  "end",     "ack"};
    return type >= SB_REPLAY_HELLO && type <= SB_REPLAY_ACK ? names[type] : names[0];
}

const char *
sb_replay_reason_name (int reason)
{
    static const char *names[] = {"unknown", "caught_up", "count",          "cancelled",
                                  "error",   "busy",      "unknown_replay", "timeout"};
    return reason >= SB_REPLAY_END_CAUGHT_UP && reason <= SB_REPLAY_END_TIMEOUT ? names[reason]
                                                                                : names[0];
}

//  Id fields may be empty where "anonymous" or "current" makes sense.
static bool
s_id_ok (const char *text, bool required)
{
    return (!required && !*text) || sb_replay_id_valid (text);
}

static bool
s_epoch_ok (const char *text, bool required)
{
    return (!required && !*text) || sb_replay_epoch_valid (text);
}

//  The rule book: NULL when msg is valid, else what is wrong.
static const char *
s_check (const sb_replay_msg_t *m)
{
    switch (m->type) {
        case SB_REPLAY_HELLO: return s_id_ok (m->consumer_id, false) ? NULL : "bad consumer_id";
        case SB_REPLAY_WELCOME:
            if (!s_id_ok (m->ingress_id, true))
                return "bad ingress_id";
            return s_epoch_ok (m->epoch, true) ? NULL : "bad epoch";
        case SB_REPLAY_REQUEST:
            if (!s_id_ok (m->consumer_id, false))
                return "bad consumer_id";
            if (!s_epoch_ok (m->epoch, false))
                return "bad epoch";
            if (m->from_seq == 0)
                return "from_seq must be >= 1";
            return m->credit <= SB_REPLAY_CREDIT_MAX ? NULL : "credit too large";
        case SB_REPLAY_START:
            if (!s_id_ok (m->ingress_id, true))
                return "bad ingress_id";
            if (!s_epoch_ok (m->epoch, true))
                return "bad epoch";
            return m->from_seq >= 1 ? NULL : "from_seq must be >= 1";
        case SB_REPLAY_RECORD:
            if (m->seq == 0)
                return "seq must be >= 1";
            if (!m->event || m->event_size == 0 || m->event_size > SB_JOURNAL_MAX_RECORD)
                return "bad event size";
            return NULL;
        case SB_REPLAY_CREDIT:
            return m->credit >= 1 && m->credit <= SB_REPLAY_CREDIT_MAX ? NULL : "bad credit";
        case SB_REPLAY_CANCEL: return NULL;
        case SB_REPLAY_END:
            if (m->reason <= 0)
                return "bad reason";
            return s_epoch_ok (m->epoch, true) ? NULL : "bad epoch";
        case SB_REPLAY_ACK:
            if (!s_id_ok (m->consumer_id, true))
                return "bad consumer_id";
            return s_epoch_ok (m->epoch, true) ? NULL : "bad epoch";
    }
    return "unknown type";
}

uint8_t *
sb_replay_encode (const sb_replay_msg_t *m, size_t *size)
{
    const char *why = s_check (m);
    if (why) {
        sb_debug ("replay", "message not encoded type=%s why=\"%s\"",
                  sb_replay_type_name ((int) m->type), why);
        return NULL;
    }
    s_pb_t pb = SWITCHBOARD__V1__REPLAY_MESSAGE__INIT;
    Switchboard__V1__ReplayHello hello = SWITCHBOARD__V1__REPLAY_HELLO__INIT;
    Switchboard__V1__ReplayWelcome welcome = SWITCHBOARD__V1__REPLAY_WELCOME__INIT;
    Switchboard__V1__ReplayRequest request = SWITCHBOARD__V1__REPLAY_REQUEST__INIT;
    Switchboard__V1__ReplayStart start = SWITCHBOARD__V1__REPLAY_START__INIT;
    Switchboard__V1__ReplayRecord record = SWITCHBOARD__V1__REPLAY_RECORD__INIT;
    Switchboard__V1__ReplayCredit credit = SWITCHBOARD__V1__REPLAY_CREDIT__INIT;
    Switchboard__V1__ReplayCancel cancel = SWITCHBOARD__V1__REPLAY_CANCEL__INIT;
    Switchboard__V1__ReplayEnd end = SWITCHBOARD__V1__REPLAY_END__INIT;
    Switchboard__V1__ReplayAck ack = SWITCHBOARD__V1__REPLAY_ACK__INIT;
    //  protobuf-c takes char *, and only reads them while packing.
    char *consumer_id = (char *) m->consumer_id;
    char *ingress_id = (char *) m->ingress_id;
    char *epoch = (char *) m->epoch;
    switch (m->type) {
        case SB_REPLAY_HELLO:
            hello.consumer_id = consumer_id;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_HELLO;
            pb.hello = &hello;
            break;
        case SB_REPLAY_WELCOME:
            welcome.ingress_id = ingress_id;
            welcome.epoch = epoch;
            welcome.committed_seq = m->committed_seq;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_WELCOME;
            pb.welcome = &welcome;
            break;
        case SB_REPLAY_REQUEST:
            request.replay_id = m->replay_id;
            request.consumer_id = consumer_id;
            request.epoch = epoch;
            request.from_seq = m->from_seq;
            request.credit = m->credit;
            request.count = m->count;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_REQUEST;
            pb.request = &request;
            break;
        case SB_REPLAY_START:
            start.replay_id = m->replay_id;
            start.ingress_id = ingress_id;
            start.epoch = epoch;
            start.from_seq = m->from_seq;
            start.committed_seq = m->committed_seq;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_START;
            pb.start = &start;
            break;
        case SB_REPLAY_RECORD:
            record.replay_id = m->replay_id;
            record.seq = m->seq;
            record.event.data = (uint8_t *) m->event;
            record.event.len = m->event_size;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_RECORD;
            pb.record = &record;
            break;
        case SB_REPLAY_CREDIT:
            credit.replay_id = m->replay_id;
            credit.credit = m->credit;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_CREDIT;
            pb.credit = &credit;
            break;
        case SB_REPLAY_CANCEL:
            cancel.replay_id = m->replay_id;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_CANCEL;
            pb.cancel = &cancel;
            break;
        case SB_REPLAY_END:
            end.replay_id = m->replay_id;
            end.reason = (Switchboard__V1__ReplayEndReason) m->reason;
            end.last_seq = m->last_seq;
            end.committed_seq = m->committed_seq;
            end.epoch = epoch;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_END;
            pb.end = &end;
            break;
        case SB_REPLAY_ACK:
            ack.consumer_id = consumer_id;
            ack.epoch = epoch;
            ack.committed_seq = m->committed_seq;
            pb.body_case = SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_ACK;
            pb.ack = &ack;
            break;
    }
    size_t packed = switchboard__v1__replay_message__get_packed_size (&pb);
    uint8_t *data = malloc (packed ? packed : 1);
    if (!data) {
        sb_error ("replay", "out of memory encoding a message size=%zu", packed);
        return NULL;
    }
    *size = switchboard__v1__replay_message__pack (&pb, data);
    return data;
}

//  Copy a decoded string into a fixed field; false when it does not fit
//  (s_check then judges the content).
static bool
s_copy (char *field, size_t field_size, const char *text)
{
    size_t len = text ? strlen (text) : 0;
    if (len >= field_size)
        return false;
    memcpy (field, text ? text : "", len);
    field[len] = 0;
    return true;
}

int
sb_replay_decode (const void *data, size_t size, sb_replay_msg_t *m)
{
    static const uint8_t empty[1] = {0};
    memset (m, 0, sizeof *m);
    if (size > SB_REPLAY_MAX_MESSAGE)
        return -1;
    if (!data)
        size = 0;
    s_pb_t *pb = switchboard__v1__replay_message__unpack (NULL, size, size ? data : empty);
    if (!pb)
        return -1;
    bool fits = true;
    switch (pb->body_case) {
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_HELLO:
            m->type = SB_REPLAY_HELLO;
            fits = s_copy (m->consumer_id, sizeof m->consumer_id, pb->hello->consumer_id);
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_WELCOME:
            m->type = SB_REPLAY_WELCOME;
            fits = s_copy (m->ingress_id, sizeof m->ingress_id, pb->welcome->ingress_id)
                   && s_copy (m->epoch, sizeof m->epoch, pb->welcome->epoch);
            m->committed_seq = pb->welcome->committed_seq;
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_REQUEST:
            m->type = SB_REPLAY_REQUEST;
            m->replay_id = pb->request->replay_id;
            fits = s_copy (m->consumer_id, sizeof m->consumer_id, pb->request->consumer_id)
                   && s_copy (m->epoch, sizeof m->epoch, pb->request->epoch);
            m->from_seq = pb->request->from_seq;
            m->credit = pb->request->credit;
            m->count = pb->request->count;
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_START:
            m->type = SB_REPLAY_START;
            m->replay_id = pb->start->replay_id;
            fits = s_copy (m->ingress_id, sizeof m->ingress_id, pb->start->ingress_id)
                   && s_copy (m->epoch, sizeof m->epoch, pb->start->epoch);
            m->from_seq = pb->start->from_seq;
            m->committed_seq = pb->start->committed_seq;
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_RECORD:
            m->type = SB_REPLAY_RECORD;
            m->replay_id = pb->record->replay_id;
            m->seq = pb->record->seq;
            m->event = pb->record->event.data;
            m->event_size = pb->record->event.len;
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_CREDIT:
            m->type = SB_REPLAY_CREDIT;
            m->replay_id = pb->credit->replay_id;
            m->credit = pb->credit->credit;
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_CANCEL:
            m->type = SB_REPLAY_CANCEL;
            m->replay_id = pb->cancel->replay_id;
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_END:
            m->type = SB_REPLAY_END;
            m->replay_id = pb->end->replay_id;
            m->reason = (int) pb->end->reason;
            m->last_seq = pb->end->last_seq;
            m->committed_seq = pb->end->committed_seq;
            fits = s_copy (m->epoch, sizeof m->epoch, pb->end->epoch);
            break;
        case SWITCHBOARD__V1__REPLAY_MESSAGE__BODY_ACK:
            m->type = SB_REPLAY_ACK;
            fits = s_copy (m->consumer_id, sizeof m->consumer_id, pb->ack->consumer_id)
                   && s_copy (m->epoch, sizeof m->epoch, pb->ack->epoch);
            m->committed_seq = pb->ack->committed_seq;
            break;
        default:
            fits = false;  //  no body, or one this version does not know
            break;
    }
    //  A oneof member may be present but its sub-message pointer is always
    //  set by protobuf-c when body_case names it.
    if (!fits || s_check (m)) {
        switchboard__v1__replay_message__free_unpacked (pb, NULL);
        memset (m, 0, sizeof *m);
        return -1;
    }
    m->unpacked = pb;
    return 0;
}

void
sb_replay_msg_clear (sb_replay_msg_t *m)
{
    if (!m)
        return;
    if (m->unpacked)
        switchboard__v1__replay_message__free_unpacked ((s_pb_t *) m->unpacked, NULL);
    memset (m, 0, sizeof *m);
}

int
sb_replay_send (void *socket, const sb_replay_msg_t *msg, int flags)
{
    size_t size = 0;
    uint8_t *data = sb_replay_encode (msg, &size);
    if (!data)
        return -1;
    int rc = zmq_send (socket, data, size, flags) < 0 ? -1 : 0;
    free (data);
    return rc;
}
