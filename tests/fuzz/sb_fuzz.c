/*  sb_fuzz: checks shared by the fuzz targets (see sb_fuzz.h).

    An event is checked through its two outside forms: the wire encoding
    (what the journal keeps and the PUB socket sends) and the JSON line
    (what `switchboard tap` prints and the dispatcher stores). Both must
    survive a trip through the wire: decode(encode(e)) shows the same JSON
    values as e, and encodes again to the same bytes. JSON values are
    compared with json_equal rather than as text, so that -0.0 and 0.0,
    which protobuf-c may or may not put on the wire, count as one value.
*/
#include "sb_fuzz.h"

#include <string.h>

#include <jansson.h>

#include "sb_log.h"

void
sb_fuzz_quiet (void)
{
    sb_log_init ("fuzz", SB_LOG_OFF);
}

//  The event's JSON line, parsed back: must be a JSON object. \u0000 is
//  allowed: a raw_body holding a NUL byte is valid UTF-8, so it is shown as
//  a string (the ingress never accepts such a body, a decoder may see one).
static json_t *
s_json_of (const sb_event_t *event)
{
    char *text = sb_event_to_json (event);
    SB_FUZZ_CHECK (text);
    SB_FUZZ_CHECK (strchr (text, '\n') == NULL);
    json_error_t error;
    json_t *json = json_loads (text, JSON_ALLOW_NUL, &error);
    if (!json)
        fprintf (stderr, "sb_event_to_json gave unparseable JSON: %s: %.200s\n", error.text, text);
    SB_FUZZ_CHECK (json);
    SB_FUZZ_CHECK (json_is_object (json));
    free (text);
    return json;
}

void
sb_fuzz_event_check (const sb_event_t *event)
{
    SB_FUZZ_CHECK (event);
    char topic[128];
    int length = sb_event_topic (event, topic, sizeof topic);
    SB_FUZZ_CHECK (length > 0 && (size_t) length == strlen (topic));
    SB_FUZZ_CHECK (strncmp (topic, "sb.v1.", 6) == 0);

    json_t *json = s_json_of (event);
    size_t size = 0;
    uint8_t *wire = sb_event_encode (event, &size);
    SB_FUZZ_CHECK (wire);
    sb_event_t *back = sb_event_decode (wire, size);
    SB_FUZZ_CHECK (back);
    json_t *json_back = s_json_of (back);
    SB_FUZZ_CHECK (json_equal (json, json_back));

    size_t size_again = 0;
    uint8_t *wire_again = sb_event_encode (back, &size_again);
    SB_FUZZ_CHECK (wire_again);
    SB_FUZZ_CHECK (size_again == size && memcmp (wire, wire_again, size) == 0);

    free (wire_again);
    json_decref (json_back);
    sb_event_destroy (&back);
    SB_FUZZ_CHECK (back == NULL);
    free (wire);
    json_decref (json);
}
