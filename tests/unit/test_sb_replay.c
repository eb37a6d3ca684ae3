/*  test_sb_replay: the replay protocol codec.

    Round trips of every message type; encode refusing what breaks the
    rules; decode refusing hand-made hostile messages (bad ids, epochs,
    sequence numbers, credit, sizes, no body); and garbage: random bytes,
    every truncation and single-bit flip of valid messages. Whatever decode
    accepts must obey the rules and encode again to the same message.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_replay.h"

#include "sb_check.h"

static const char *s_epoch = "0123456789abcdef0123456789abcdef";

//  Field-by-field equality of two messages (event bytes compared by value).
static bool
s_same (const sb_replay_msg_t *a, const sb_replay_msg_t *b)
{
    if (a->type != b->type || a->replay_id != b->replay_id || a->from_seq != b->from_seq
        || a->seq != b->seq || a->last_seq != b->last_seq || a->committed_seq != b->committed_seq
        || a->count != b->count || a->credit != b->credit || a->reason != b->reason
        || a->event_size != b->event_size)
        return false;
    if (strcmp (a->consumer_id, b->consumer_id) || strcmp (a->ingress_id, b->ingress_id)
        || strcmp (a->epoch, b->epoch))
        return false;
    return a->event_size == 0 || memcmp (a->event, b->event, a->event_size) == 0;
}

//  Encode, decode, compare. Returns the encoded size.
static size_t
s_round_trip (const sb_replay_msg_t *msg, int line)
{
    size_t size = 0;
    uint8_t *data = sb_replay_encode (msg, &size);
    if (!data) {
        fprintf (stderr, "%s:%d: encode refused a valid %s\n", __FILE__, line,
                 sb_replay_type_name ((int) msg->type));
        s_failures++;
        return 0;
    }
    sb_replay_msg_t back;
    if (sb_replay_decode (data, size, &back) != 0) {
        fprintf (stderr, "%s:%d: decode refused an encoded %s\n", __FILE__, line,
                 sb_replay_type_name ((int) msg->type));
        s_failures++;
    }
    else if (!s_same (msg, &back)) {
        fprintf (stderr, "%s:%d: %s differs after a round trip\n", __FILE__, line,
                 sb_replay_type_name ((int) msg->type));
        s_failures++;
    }
    sb_replay_msg_clear (&back);
    free (data);
    return size;
}

static void
s_test_round_trips (void)
{
    sb_replay_msg_t m;

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_HELLO;
    s_round_trip (&m, __LINE__);  //  anonymous
    sb_replay_set (m.consumer_id, sizeof m.consumer_id, "dispatcher@host-1.example:2");
    s_round_trip (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_WELCOME;
    sb_replay_set (m.ingress_id, sizeof m.ingress_id, "ingress-a");
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    s_round_trip (&m, __LINE__);  //  empty journal
    m.committed_seq = UINT64_MAX;
    s_round_trip (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_REQUEST;
    m.replay_id = 7;
    m.from_seq = 1;
    s_round_trip (&m, __LINE__);  //  anonymous, current epoch, credit 0
    sb_replay_set (m.consumer_id, sizeof m.consumer_id, "dispatcher");
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    m.from_seq = 123456789012ULL;
    m.credit = SB_REPLAY_CREDIT_MAX;
    m.count = 50;
    s_round_trip (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_START;
    m.replay_id = UINT64_MAX;
    sb_replay_set (m.ingress_id, sizeof m.ingress_id, "i");
    sb_replay_set (m.epoch, sizeof m.epoch, "ABCDEF");
    m.from_seq = 1;
    m.committed_seq = 0;
    s_round_trip (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_RECORD;
    m.replay_id = 3;
    m.seq = 42;
    static uint8_t event[70000];
    for (size_t i = 0; i < sizeof event; i++)
        event[i] = (uint8_t) (i * 31 + 7);
    m.event = event;
    m.event_size = 1;
    s_round_trip (&m, __LINE__);
    m.event_size = sizeof event;
    CHECK (s_round_trip (&m, __LINE__) > sizeof event);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_CREDIT;
    m.replay_id = 3;
    m.credit = 1;
    s_round_trip (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_CANCEL;
    s_round_trip (&m, __LINE__);  //  an all-default message still has a body
    m.replay_id = 99;
    s_round_trip (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_END;
    m.replay_id = 3;
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    for (int reason = SB_REPLAY_END_CAUGHT_UP; reason <= SB_REPLAY_END_UNKNOWN + 3; reason++) {
        m.reason = reason;  //  newer reasons pass as numbers
        m.last_seq = (uint64_t) reason * 10;
        m.committed_seq = (uint64_t) reason * 11;
        s_round_trip (&m, __LINE__);
    }

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_ACK;
    sb_replay_set (m.consumer_id, sizeof m.consumer_id, "dispatcher");
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    m.committed_seq = 5000;
    s_round_trip (&m, __LINE__);
}

//  encode must refuse what decode would refuse.
static void
s_expect_refused (const sb_replay_msg_t *m, int line)
{
    size_t size = 0;
    uint8_t *data = sb_replay_encode (m, &size);
    if (data) {
        fprintf (stderr, "%s:%d: encode accepted an invalid %s\n", __FILE__, line,
                 sb_replay_type_name ((int) m->type));
        s_failures++;
        free (data);
    }
}

static void
s_test_encode_refuses (void)
{
    sb_replay_msg_t m;
    memset (&m, 0, sizeof m);
    s_expect_refused (&m, __LINE__);  //  type 0
    m.type = (sb_replay_type_t) 42;
    s_expect_refused (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_HELLO;
    sb_replay_set (m.consumer_id, sizeof m.consumer_id, "has space");
    s_expect_refused (&m, __LINE__);
    sb_replay_set (m.consumer_id, sizeof m.consumer_id, "quote\"");
    s_expect_refused (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_WELCOME;
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    s_expect_refused (&m, __LINE__);  //  ingress_id required
    sb_replay_set (m.ingress_id, sizeof m.ingress_id, "ingress");
    sb_replay_set (m.epoch, sizeof m.epoch, "xyz");
    s_expect_refused (&m, __LINE__);  //  not hex
    m.epoch[0] = 0;
    s_expect_refused (&m, __LINE__);  //  epoch required

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_REQUEST;
    m.from_seq = 0;
    s_expect_refused (&m, __LINE__);
    m.from_seq = 1;
    m.credit = SB_REPLAY_CREDIT_MAX + 1;
    s_expect_refused (&m, __LINE__);
    m.credit = 10;
    sb_replay_set (m.epoch, sizeof m.epoch, "not-hex");
    s_expect_refused (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_START;
    sb_replay_set (m.ingress_id, sizeof m.ingress_id, "ingress");
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    s_expect_refused (&m, __LINE__);  //  from_seq 0

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_RECORD;
    m.seq = 1;
    s_expect_refused (&m, __LINE__);  //  no event
    uint8_t byte = 1;
    m.event = &byte;
    m.event_size = 1;
    m.seq = 0;
    s_expect_refused (&m, __LINE__);  //  seq 0
    m.seq = 1;
    m.event_size = (size_t) SB_JOURNAL_MAX_RECORD + 1;
    s_expect_refused (&m, __LINE__);  //  larger than a journal record (not read: refused first)

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_CREDIT;
    s_expect_refused (&m, __LINE__);  //  credit 0
    m.credit = SB_REPLAY_CREDIT_MAX + 1;
    s_expect_refused (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_END;
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    s_expect_refused (&m, __LINE__);  //  reason 0
    m.reason = -1;
    s_expect_refused (&m, __LINE__);

    memset (&m, 0, sizeof m);
    m.type = SB_REPLAY_ACK;
    sb_replay_set (m.epoch, sizeof m.epoch, s_epoch);
    s_expect_refused (&m, __LINE__);  //  consumer_id required
}

//  A tiny protobuf writer to build messages encode would never produce.
typedef struct {
    uint8_t data[4096];
    size_t size;
} s_buf_t;

static void
s_varint (s_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        b->data[b->size++] = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    b->data[b->size++] = (uint8_t) v;
}

static void
s_field_varint (s_buf_t *b, unsigned field, uint64_t v)
{
    s_varint (b, (uint64_t) field << 3);
    s_varint (b, v);
}

static void
s_field_bytes (s_buf_t *b, unsigned field, const void *data, size_t size)
{
    s_varint (b, (uint64_t) field << 3 | 2);
    s_varint (b, size);
    memcpy (b->data + b->size, data, size);
    b->size += size;
}

static void
s_field_str (s_buf_t *b, unsigned field, const char *text)
{
    s_field_bytes (b, field, text, strlen (text));
}

//  Wrap body as field `which` of ReplayMessage.
static s_buf_t
s_wrap (unsigned which, const s_buf_t *body)
{
    s_buf_t out = {.size = 0};
    s_field_bytes (&out, which, body->data, body->size);
    return out;
}

static void
s_expect_decode (const s_buf_t *b, int want, int line)
{
    sb_replay_msg_t m;
    int rc = sb_replay_decode (b->data, b->size, &m);
    if (rc != want) {
        fprintf (stderr, "%s:%d: decode returned %d, want %d\n", __FILE__, line, rc, want);
        s_failures++;
    }
    sb_replay_msg_clear (&m);
}

static void
s_test_decode_hostile (void)
{
    s_buf_t body, msg;

    //  No body at all, and an unknown body (field 15).
    msg.size = 0;
    s_expect_decode (&msg, -1, __LINE__);
    body.size = 0;
    msg = s_wrap (15, &body);
    s_expect_decode (&msg, -1, __LINE__);

    //  ACK: consumer id with a space, a newline (log/metric label injection),
    //  too long, fine.
    const char *bad_ids[] = {"bad id", "x\ny", "lab\"el", "", NULL};
    for (int i = 0; bad_ids[i]; i++) {
        body.size = 0;
        s_field_str (&body, 1, bad_ids[i]);
        s_field_str (&body, 2, s_epoch);
        msg = s_wrap (9, &body);
        s_expect_decode (&msg, -1, __LINE__);
    }
    char long_id[SB_REPLAY_ID_MAX + 2];
    memset (long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    body.size = 0;
    s_field_str (&body, 1, long_id);
    s_field_str (&body, 2, s_epoch);
    msg = s_wrap (9, &body);
    s_expect_decode (&msg, -1, __LINE__);
    long_id[SB_REPLAY_ID_MAX] = 0;  //  exactly the maximum
    body.size = 0;
    s_field_str (&body, 1, long_id);
    s_field_str (&body, 2, s_epoch);
    msg = s_wrap (9, &body);
    s_expect_decode (&msg, 0, __LINE__);

    //  An embedded NUL in an id is cut there, then judged: "ab" is fine,
    //  "" is not.
    body.size = 0;
    s_field_bytes (&body, 1, "ab\0cd", 5);
    s_field_str (&body, 2, s_epoch);
    msg = s_wrap (9, &body);
    sb_replay_msg_t m;
    if (sb_replay_decode (msg.data, msg.size, &m) == 0) {
        CHECK (strcmp (m.consumer_id, "ab") == 0);
        sb_replay_msg_clear (&m);
    }
    body.size = 0;
    s_field_bytes (&body, 1, "\0cd", 3);
    s_field_str (&body, 2, s_epoch);
    msg = s_wrap (9, &body);
    s_expect_decode (&msg, -1, __LINE__);

    //  REQUEST: from_seq 0, credit too large, epoch not hex; then fine with
    //  an unknown field (ignored).
    body.size = 0;
    s_field_varint (&body, 1, 5);
    s_field_varint (&body, 4, 0);
    msg = s_wrap (3, &body);
    s_expect_decode (&msg, -1, __LINE__);
    body.size = 0;
    s_field_varint (&body, 4, 1);
    s_field_varint (&body, 5, (uint64_t) SB_REPLAY_CREDIT_MAX + 1);
    msg = s_wrap (3, &body);
    s_expect_decode (&msg, -1, __LINE__);
    body.size = 0;
    s_field_varint (&body, 4, 1);
    s_field_varint (&body, 5, 1ULL << 33);  //  larger than uint32: protobuf-c truncates
    msg = s_wrap (3, &body);
    if (sb_replay_decode (msg.data, msg.size, &m) == 0) {
        CHECK (m.credit <= SB_REPLAY_CREDIT_MAX);
        sb_replay_msg_clear (&m);
    }
    body.size = 0;
    s_field_varint (&body, 4, 1);
    s_field_str (&body, 3, "zz");
    msg = s_wrap (3, &body);
    s_expect_decode (&msg, -1, __LINE__);
    body.size = 0;
    s_field_varint (&body, 4, 9);
    s_field_varint (&body, 5, 100);
    s_field_str (&body, 99, "future field");
    msg = s_wrap (3, &body);
    if (sb_replay_decode (msg.data, msg.size, &m) != 0)
        CHECK (!"a request with an unknown field must decode");
    else {
        CHECK (m.type == SB_REPLAY_REQUEST && m.from_seq == 9 && m.credit == 100);
        sb_replay_msg_clear (&m);
    }

    //  RECORD: seq 0, empty event.
    body.size = 0;
    s_field_varint (&body, 2, 0);
    s_field_str (&body, 3, "x");
    msg = s_wrap (5, &body);
    s_expect_decode (&msg, -1, __LINE__);
    body.size = 0;
    s_field_varint (&body, 2, 1);
    msg = s_wrap (5, &body);
    s_expect_decode (&msg, -1, __LINE__);

    //  END: reason 0 and a negative enum value.
    body.size = 0;
    s_field_str (&body, 5, s_epoch);
    msg = s_wrap (8, &body);
    s_expect_decode (&msg, -1, __LINE__);
    body.size = 0;
    s_field_varint (&body, 2, (uint64_t) -3);
    s_field_str (&body, 5, s_epoch);
    msg = s_wrap (8, &body);
    s_expect_decode (&msg, -1, __LINE__);

    //  A length that runs past the end, and a wrong wire type.
    msg.size = 0;
    s_varint (&msg, 9 << 3 | 2);
    s_varint (&msg, 1000);
    s_field_str (&msg, 1, "x");
    s_expect_decode (&msg, -1, __LINE__);
    msg.size = 0;
    s_field_varint (&msg, 9, 1);  //  ack as a varint
    s_expect_decode (&msg, -1, __LINE__);

    //  Oversized input is refused before parsing.
    s_expect_decode (&(s_buf_t){.size = 0}, -1, __LINE__);
    CHECK (sb_replay_decode ("", SB_REPLAY_MAX_MESSAGE + 1, &m) == -1);
    CHECK (sb_replay_decode (NULL, 0, &m) == -1);
}

//  Whatever decode accepts must encode again to an equal message.
static void
s_accepted_is_valid (const uint8_t *data, size_t size)
{
    sb_replay_msg_t m;
    if (sb_replay_decode (data, size, &m) != 0)
        return;
    size_t again_size = 0;
    uint8_t *again = sb_replay_encode (&m, &again_size);
    if (!again) {
        fprintf (stderr, "%s:%d: decode accepted a %s that encode refuses\n", __FILE__, __LINE__,
                 sb_replay_type_name ((int) m.type));
        s_failures++;
    }
    else {
        sb_replay_msg_t back;
        if (sb_replay_decode (again, again_size, &back) != 0 || !s_same (&m, &back)) {
            fprintf (stderr, "%s:%d: re-encoded %s differs\n", __FILE__, __LINE__,
                     sb_replay_type_name ((int) m.type));
            s_failures++;
        }
        sb_replay_msg_clear (&back);
    }
    free (again);
    sb_replay_msg_clear (&m);
}

static uint64_t s_rng = 0x9e3779b97f4a7c15ULL;  //  test-local PRNG state

static uint32_t
s_rand (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t) (s_rng >> 11);
}

static void
s_test_garbage (void)
{
    //  Random bytes of random lengths.
    uint8_t buf[512];
    for (int i = 0; i < 200000; i++) {
        size_t size = s_rand () % sizeof buf;
        for (size_t k = 0; k < size; k++)
            buf[k] = (uint8_t) s_rand ();
        //  Now and then start with a plausible ReplayMessage tag.
        if (size > 0 && i % 3 == 0)
            buf[0] = (uint8_t) (((s_rand () % 10) << 3) | 2);
        s_accepted_is_valid (buf, size);
    }

    //  Every truncation and every single-bit flip of valid messages.
    sb_replay_msg_t samples[5];
    memset (samples, 0, sizeof samples);
    samples[0].type = SB_REPLAY_REQUEST;
    samples[0].replay_id = 77;
    sb_replay_set (samples[0].consumer_id, sizeof samples[0].consumer_id, "dispatcher");
    sb_replay_set (samples[0].epoch, sizeof samples[0].epoch, s_epoch);
    samples[0].from_seq = 1000;
    samples[0].credit = 500;
    samples[0].count = 3;
    samples[1].type = SB_REPLAY_RECORD;
    samples[1].replay_id = 77;
    samples[1].seq = 1000;
    samples[1].event = (const uint8_t *) "\x08\x01\x12\x03"
                                         "abc";
    samples[1].event_size = 7;
    samples[2].type = SB_REPLAY_END;
    samples[2].replay_id = 77;
    samples[2].reason = SB_REPLAY_END_CAUGHT_UP;
    samples[2].last_seq = 1002;
    samples[2].committed_seq = 1002;
    sb_replay_set (samples[2].epoch, sizeof samples[2].epoch, s_epoch);
    samples[3].type = SB_REPLAY_WELCOME;
    sb_replay_set (samples[3].ingress_id, sizeof samples[3].ingress_id, "ingress-1");
    sb_replay_set (samples[3].epoch, sizeof samples[3].epoch, s_epoch);
    samples[3].committed_seq = 5;
    samples[4].type = SB_REPLAY_ACK;
    sb_replay_set (samples[4].consumer_id, sizeof samples[4].consumer_id, "dispatcher");
    sb_replay_set (samples[4].epoch, sizeof samples[4].epoch, s_epoch);
    samples[4].committed_seq = 5;
    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
        size_t size = 0;
        uint8_t *data = sb_replay_encode (&samples[s], &size);
        CHECK (data != NULL);
        if (!data)
            continue;
        for (size_t cut = 0; cut < size; cut++) {
            //  A copy of exactly cut bytes, so ASan sees any over-read.
            uint8_t *copy = malloc (cut ? cut : 1);
            memcpy (copy, data, cut);
            s_accepted_is_valid (copy, cut);
            free (copy);
        }
        uint8_t *copy = malloc (size);
        for (size_t bit = 0; bit < size * 8; bit++) {
            memcpy (copy, data, size);
            copy[bit / 8] ^= (uint8_t) (1u << (bit % 8));
            s_accepted_is_valid (copy, size);
        }
        free (copy);
        free (data);
    }
}

static void
s_test_names (void)
{
    CHECK (strcmp (sb_replay_type_name (SB_REPLAY_RECORD), "record") == 0);
    CHECK (strcmp (sb_replay_type_name (0), "unknown") == 0);
    CHECK (strcmp (sb_replay_type_name (1000), "unknown") == 0);
    CHECK (strcmp (sb_replay_reason_name (SB_REPLAY_END_CAUGHT_UP), "caught_up") == 0);
    CHECK (strcmp (sb_replay_reason_name (SB_REPLAY_END_UNKNOWN), "unknown_replay") == 0);
    CHECK (strcmp (sb_replay_reason_name (SB_REPLAY_END_TIMEOUT), "timeout") == 0);
    CHECK (strcmp (sb_replay_reason_name (SB_REPLAY_END_TIMEOUT + 1), "unknown") == 0);
    CHECK (strcmp (sb_replay_reason_name (77), "unknown") == 0);
    CHECK (sb_replay_id_valid ("ingress-1.a_b:c@d"));
    CHECK (!sb_replay_id_valid (""));
    CHECK (!sb_replay_id_valid ("a/b"));
    CHECK (sb_replay_epoch_valid (s_epoch));
    CHECK (!sb_replay_epoch_valid ("0x12"));
    sb_replay_msg_t zero;
    memset (&zero, 0, sizeof zero);
    sb_replay_msg_clear (&zero);  //  safe on a zeroed message
    sb_replay_msg_clear (NULL);
}

int
main (void)
{
    s_test_round_trips ();
    s_test_encode_refuses ();
    s_test_decode_hostile ();
    s_test_garbage ();
    s_test_names ();
    if (s_failures) {
        fprintf (stderr, "test_sb_replay: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
