/*  fuzz_replay: the replay protocol codec (common/sb_replay.h) on arbitrary
    bytes: what the ingress's ROUTER reads from any consumer, and what a
    consumer (the dispatcher, `switchboard replay`) reads from an ingress.

    Input: one frame's bytes, used twice.
    1. sb_replay_decode on them. Whatever decodes obeys the rule book (a
       known type; ids and epochs empty or valid; seqs, credit, reason and
       event size in range), re-encodes (encode refuses exactly what decode
       refuses), and decodes again to the same message field by field;
       encoding that again gives the same bytes.
    2. The same bytes as a recipe for a message (type, ids, epoch, numbers,
       event; ids drawn mostly from the valid alphabet, so most recipes are
       valid): when sb_replay_encode accepts it, decode accepts the bytes
       and gives back the message, fields its type does not carry being
       zero.
    Beyond these, no sanitizer finding; sb_replay_msg_clear frees every
    decoded message.
*/
#include <string.h>

#include "sb_fuzz.h"
#include "sb_replay.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    return 0;
}

//  Field-by-field equality (event bytes compared by value).
static int
s_same (const sb_replay_msg_t *a, const sb_replay_msg_t *b)
{
    if (a->type != b->type || a->replay_id != b->replay_id || a->from_seq != b->from_seq
        || a->seq != b->seq || a->last_seq != b->last_seq || a->committed_seq != b->committed_seq
        || a->count != b->count || a->credit != b->credit || a->reason != b->reason
        || a->event_size != b->event_size)
        return 0;
    if (strcmp (a->consumer_id, b->consumer_id) || strcmp (a->ingress_id, b->ingress_id)
        || strcmp (a->epoch, b->epoch))
        return 0;
    return a->event_size == 0 || memcmp (a->event, b->event, a->event_size) == 0;
}

static int
s_terminated (const char *field, size_t size)
{
    return memchr (field, '\0', size) != NULL;
}

//  The rules a decoded message must obey.
static void
s_check_rules (const sb_replay_msg_t *m)
{
    SB_FUZZ_CHECK (m->type >= SB_REPLAY_HELLO && m->type <= SB_REPLAY_ACK);
    SB_FUZZ_CHECK (s_terminated (m->consumer_id, sizeof m->consumer_id));
    SB_FUZZ_CHECK (s_terminated (m->ingress_id, sizeof m->ingress_id));
    SB_FUZZ_CHECK (s_terminated (m->epoch, sizeof m->epoch));
    SB_FUZZ_CHECK (!*m->consumer_id || sb_replay_id_valid (m->consumer_id));
    SB_FUZZ_CHECK (!*m->ingress_id || sb_replay_id_valid (m->ingress_id));
    SB_FUZZ_CHECK (!*m->epoch || sb_replay_epoch_valid (m->epoch));
    SB_FUZZ_CHECK (m->credit <= SB_REPLAY_CREDIT_MAX);
    switch (m->type) {
        case SB_REPLAY_WELCOME:
        case SB_REPLAY_START:
            SB_FUZZ_CHECK (*m->ingress_id && *m->epoch);
            SB_FUZZ_CHECK (m->type == SB_REPLAY_WELCOME || m->from_seq >= 1);
            break;
        case SB_REPLAY_REQUEST: SB_FUZZ_CHECK (m->from_seq >= 1); break;
        case SB_REPLAY_RECORD:
            SB_FUZZ_CHECK (m->seq >= 1 && m->event);
            SB_FUZZ_CHECK (m->event_size >= 1 && m->event_size <= SB_JOURNAL_MAX_RECORD);
            break;
        case SB_REPLAY_CREDIT: SB_FUZZ_CHECK (m->credit >= 1); break;
        case SB_REPLAY_END: SB_FUZZ_CHECK (m->reason > 0 && *m->epoch); break;
        case SB_REPLAY_ACK: SB_FUZZ_CHECK (*m->consumer_id && *m->epoch); break;
        default: break;
    }
    if (m->type != SB_REPLAY_RECORD)
        SB_FUZZ_CHECK (m->event == NULL && m->event_size == 0);
}

//  Encode, decode back, compare, and encode again to the same bytes.
static void
s_round_trip (const sb_replay_msg_t *msg, const uint8_t *expect, size_t expect_size)
{
    size_t size = 0;
    uint8_t *bytes = sb_replay_encode (msg, &size);
    SB_FUZZ_CHECK (bytes);
    SB_FUZZ_CHECK (size <= SB_REPLAY_MAX_MESSAGE);
    if (expect)
        SB_FUZZ_CHECK (size == expect_size && memcmp (bytes, expect, size) == 0);
    sb_replay_msg_t back;
    SB_FUZZ_CHECK (sb_replay_decode (bytes, size, &back) == 0);
    SB_FUZZ_CHECK (s_same (msg, &back));
    s_check_rules (&back);
    if (!expect)
        s_round_trip (&back, bytes, size);
    sb_replay_msg_clear (&back);
    free (bytes);
}

//  Reads the recipe: bytes in order, zeros once they run out.
typedef struct {
    const uint8_t *data;  //  the input
    size_t size;          //  its length
    size_t at;            //  next byte
} s_recipe_t;

static uint8_t
s_byte (s_recipe_t *r)
{
    return r->at < r->size ? r->data[r->at++] : 0;
}

//  A number: one byte says how many bytes (0-8) make it.
static uint64_t
s_number (s_recipe_t *r)
{
    unsigned count = s_byte (r) % 9;
    uint64_t value = 0;
    for (unsigned i = 0; i < count; i++)
        value = value << 8 | s_byte (r);
    return value;
}

//  Text of up to 79 characters: mostly id characters, sometimes hex only
//  (epochs), sometimes any byte but NUL (to be refused).
static void
s_text (s_recipe_t *r, char *field, size_t field_size, int hex)
{
    static const char ids[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-";
    static const char digits[] = "0123456789abcdefABCDEF";
    size_t len = s_byte (r) % 80;
    if (len >= field_size)
        len = field_size - 1;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = s_byte (r);
        if (b >= 0xF8)
            field[i] = (char) (b == 0xFF ? ' ' : b);  //  outside the alphabets
        else if (hex)
            field[i] = digits[b % (sizeof digits - 1)];
        else
            field[i] = ids[b % (sizeof ids - 1)];
    }
    field[len] = '\0';
}

//  The message the recipe describes, with only the fields its type has.
static void
s_cook (s_recipe_t *r, sb_replay_msg_t *m, uint8_t *event, size_t event_cap)
{
    memset (m, 0, sizeof *m);
    m->type = (sb_replay_type_t) (1 + s_byte (r) % 10);  //  10: an unknown type
    switch (m->type) {
        case SB_REPLAY_HELLO: s_text (r, m->consumer_id, sizeof m->consumer_id, 0); break;
        case SB_REPLAY_WELCOME:
            s_text (r, m->ingress_id, sizeof m->ingress_id, 0);
            s_text (r, m->epoch, sizeof m->epoch, 1);
            m->committed_seq = s_number (r);
            break;
        case SB_REPLAY_REQUEST:
            m->replay_id = s_number (r);
            s_text (r, m->consumer_id, sizeof m->consumer_id, 0);
            s_text (r, m->epoch, sizeof m->epoch, 1);
            m->from_seq = s_number (r);
            m->credit = (uint32_t) s_number (r);
            m->count = s_number (r);
            break;
        case SB_REPLAY_START:
            m->replay_id = s_number (r);
            s_text (r, m->ingress_id, sizeof m->ingress_id, 0);
            s_text (r, m->epoch, sizeof m->epoch, 1);
            m->from_seq = s_number (r);
            m->committed_seq = s_number (r);
            break;
        case SB_REPLAY_RECORD: {
            m->replay_id = s_number (r);
            m->seq = s_number (r);
            size_t size = s_byte (r);
            if (size > event_cap)
                size = event_cap;
            for (size_t i = 0; i < size; i++)
                event[i] = s_byte (r);
            m->event = size ? event : NULL;
            m->event_size = size;
            break;
        }
        case SB_REPLAY_CREDIT:
            m->replay_id = s_number (r);
            m->credit = (uint32_t) s_number (r);
            break;
        case SB_REPLAY_CANCEL: m->replay_id = s_number (r); break;
        case SB_REPLAY_END:
            m->replay_id = s_number (r);
            m->reason = (int) (int8_t) s_byte (r);
            m->last_seq = s_number (r);
            m->committed_seq = s_number (r);
            s_text (r, m->epoch, sizeof m->epoch, 1);
            break;
        case SB_REPLAY_ACK:
            s_text (r, m->consumer_id, sizeof m->consumer_id, 0);
            s_text (r, m->epoch, sizeof m->epoch, 1);
            m->committed_seq = s_number (r);
            break;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  1. The bytes as a frame from the wire.
    sb_replay_msg_t msg;
    if (sb_replay_decode (data, size, &msg) == 0) {
        s_check_rules (&msg);
        s_round_trip (&msg, NULL, 0);
        sb_replay_msg_clear (&msg);
        SB_FUZZ_CHECK (msg.unpacked == NULL && msg.event == NULL);
    }
    else
        SB_FUZZ_CHECK (msg.type == 0 && msg.unpacked == NULL && msg.event == NULL);

    //  2. The bytes as a recipe for a message.
    uint8_t event[256];
    s_recipe_t recipe = {.data = data, .size = size, .at = 0};
    s_cook (&recipe, &msg, event, sizeof event);
    size_t encoded_size = 0;
    uint8_t *encoded = sb_replay_encode (&msg, &encoded_size);
    if (encoded) {
        s_check_rules (&msg);
        sb_replay_msg_t back;
        SB_FUZZ_CHECK (sb_replay_decode (encoded, encoded_size, &back) == 0);
        SB_FUZZ_CHECK (s_same (&msg, &back));
        sb_replay_msg_clear (&back);
        free (encoded);
    }
    return 0;
}
