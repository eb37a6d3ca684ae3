/*  fuzz_event: sb_event_decode on arbitrary bytes (what a consumer reads
    from the PUB socket or the journal), sb_event_to_json of what decodes,
    and sb_event_stamp (what the journal appends to each event).

    Invariants, beyond "no sanitizer finding":
    - a decoded event passes sb_fuzz_event_check (JSON parses; the wire
      trip keeps the JSON values; re-encoding is stable).
    - stamping bytes that decode gives bytes that decode, to the same
      event but with seq and id "<ingress>-<epoch>-<seq>" as stamped, for
      a small seq, one from the input and the largest.
    - sb_event_raw_seq points at this event or request_index before it.
    - stamping never fails on bytes that do not decode either (it does not
      look at them), and its output is the input followed by the stamp.
*/
#include <inttypes.h>
#include <string.h>

#include <jansson.h>

#include "sb_fuzz.h"

#define S_INGRESS "ingress-fuzz"
#define S_EPOCH "0123456789abcdef0123456789abcdef"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    return 0;
}

//  The event's JSON without seq and id, to compare an event and its stamped
//  copy.
static json_t *
s_json_unstamped (const sb_event_t *event)
{
    char *text = sb_event_to_json (event);
    SB_FUZZ_CHECK (text);
    json_t *json = json_loads (text, JSON_ALLOW_NUL, NULL);
    SB_FUZZ_CHECK (json);
    json_object_del (json, "seq");
    json_object_del (json, "id");
    free (text);
    return json;
}

static void
s_check_stamp (const uint8_t *data, size_t size, const sb_event_t *event, uint64_t seq)
{
    size_t stamped_size = 0;
    uint8_t *stamped = sb_event_stamp (data, size, seq, S_INGRESS, S_EPOCH, &stamped_size);
    SB_FUZZ_CHECK (stamped);
    SB_FUZZ_CHECK (stamped_size > size);
    SB_FUZZ_CHECK (size == 0 || memcmp (stamped, data, size) == 0);
    if (event) {
        sb_event_t *back = sb_event_decode (stamped, stamped_size);
        SB_FUZZ_CHECK (back);
        SB_FUZZ_CHECK (back->seq == seq);
        char id[128];
        snprintf (id, sizeof id, "%s-%s-%" PRIu64, S_INGRESS, S_EPOCH, seq);
        SB_FUZZ_CHECK (back->id && strcmp (back->id, id) == 0);
        json_t *before = s_json_unstamped (event);
        json_t *after = s_json_unstamped (back);
        SB_FUZZ_CHECK (json_equal (before, after));
        json_decref (before);
        json_decref (after);
        sb_fuzz_event_check (back);
        sb_event_destroy (&back);
    }
    free (stamped);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    sb_event_t *event = sb_event_decode (data, size);
    if (event) {
        sb_fuzz_event_check (event);
        //  The event carrying the raw body is this one or an earlier one of
        //  its request (0: none can be).
        uint64_t raw_seq = sb_event_raw_seq (event);
        SB_FUZZ_CHECK (raw_seq <= event->seq);
        SB_FUZZ_CHECK (raw_seq == 0 || raw_seq == event->seq
                       || raw_seq + event->request_index == event->seq);
    }

    uint64_t from_input = 0;
    memcpy (&from_input, data, size < sizeof from_input ? size : sizeof from_input);
    s_check_stamp (data, size, event, 1);
    s_check_stamp (data, size, event, from_input);
    s_check_stamp (data, size, event, UINT64_MAX);

    //  Stamping with no ids at all still gives an id "--<seq>"
    size_t stamped_size = 0;
    uint8_t *stamped = sb_event_stamp (data, size, 7, NULL, NULL, &stamped_size);
    SB_FUZZ_CHECK (stamped);
    if (event) {
        sb_event_t *back = sb_event_decode (stamped, stamped_size);
        SB_FUZZ_CHECK (back && back->seq == 7 && strcmp (back->id, "--7") == 0);
        sb_event_destroy (&back);
    }
    free (stamped);
    sb_event_destroy (&event);
    return 0;
}
