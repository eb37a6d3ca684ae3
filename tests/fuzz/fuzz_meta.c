/*  fuzz_meta: sb_meta_normalize on arbitrary request bodies, then every
    event it makes through the wire and JSON forms (sb_fuzz_event_check).

    Invariants, beyond "no sanitizer finding":
    - a body holding a NUL byte is not JSON (RFC 8259 allows no NUL outside
      strings, and none raw inside) and sb_meta.c says it fails: refused.
    - a refusal returns -1 with no events and a non-empty reason that fits
      err; a success returns only Meta WhatsApp events of kind message or
      status, each with a message_type or a status, and no more than the
      normalizer's cap.
    - the body as the ingress attaches it (raw_body) survives the wire.
    - a small err buffer is never overrun (ASan sees the exact size).

    The body is normalized as the ingress does it, inside a 16 KiB scratch
    (sb_scratch.h: ASan poisons what is not handed out, so a piece overrun
    is found as in malloc'd memory; a big body spills to malloc); the
    small-err call runs without a scratch.
*/
#include <stdalign.h>
#include <string.h>

#include "sb_fuzz.h"
#include "sb_json.h"
#include "sb_meta.h"
#include "sb_scratch.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    sb_json_use_scratch ();  //  as the ingress does
    return 0;
}

static void
s_check_event (sb_event_t *event, const uint8_t *data, size_t size)
{
    SB_FUZZ_CHECK (event);
    SB_FUZZ_CHECK (event->provider == SB_PROVIDER_META);
    SB_FUZZ_CHECK (event->channel == SB_CHANNEL_WHATSAPP);
    //  messages and statuses; the other fields' kinds (a call, an echo, ...)
    SB_FUZZ_CHECK (event->kind == SB_KIND_MESSAGE || event->kind == SB_KIND_STATUS
                   || event->kind == SB_KIND_CALL || event->kind == SB_KIND_ECHO
                   || event->kind == SB_KIND_PREFERENCE || event->kind == SB_KIND_TEMPLATE
                   || event->kind == SB_KIND_ACCOUNT || event->kind == SB_KIND_OTHER);
    if (event->kind == SB_KIND_MESSAGE || event->kind == SB_KIND_ECHO)
        SB_FUZZ_CHECK (event->message_type && *event->message_type);
    if (event->meta_call && event->meta_call->sdp)
        SB_FUZZ_CHECK (strlen (event->meta_call->sdp) <= 64 * 1024);
    sb_fuzz_event_check (event);

    //  As the ingress sends it: with the request attached
    SB_FUZZ_CHECK (sb_event_set_raw (event, data, size) == 0);
    SB_FUZZ_CHECK (sb_event_set (&event->raw_content_type, "application/json") == 0);
    SB_FUZZ_CHECK (sb_event_set (&event->request_path, "/meta/webhook") == 0);
    sb_fuzz_event_check (event);
    size_t wire_size = 0;
    uint8_t *wire = sb_event_encode (event, &wire_size);
    SB_FUZZ_CHECK (wire);
    sb_event_t *back = sb_event_decode (wire, wire_size);
    SB_FUZZ_CHECK (back);
    SB_FUZZ_CHECK (back->raw_body.len == size);
    SB_FUZZ_CHECK (size == 0 || memcmp (back->raw_body.data, data, size) == 0);
    sb_event_destroy (&back);
    free (wire);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *body = (const char *) data;
    sb_event_t **events = NULL;
    size_t count = 99;
    char err[200];
    memset (err, 'x', sizeof err);
    alignas (16) char scratch[16 * 1024];
    sb_scratch_begin (scratch, sizeof scratch);
    int rc = sb_meta_normalize (body, size, &events, &count, err, sizeof err);
    SB_FUZZ_CHECK (rc == 0 || rc == -1);
    if (memchr (body, '\0', size))
        SB_FUZZ_CHECK (rc == -1);
    if (rc != 0) {
        SB_FUZZ_CHECK (events == NULL && count == 0);
        SB_FUZZ_CHECK (memchr (err, '\0', sizeof err) && err[0] != '\0');
    }
    else {
        SB_FUZZ_CHECK (count <= 10000);
        SB_FUZZ_CHECK (count == 0 || events != NULL);
        for (size_t i = 0; i < count; i++)
            s_check_event (events[i], data, size);
        sb_meta_events_free (&events, count);
        SB_FUZZ_CHECK (events == NULL);
    }
    sb_scratch_end (scratch);

    //  The reason is cut to fit a tiny buffer, never written past it
    char *tiny = malloc (4);
    SB_FUZZ_CHECK (tiny);
    rc = sb_meta_normalize (body, size, &events, &count, tiny, 4);
    if (rc == 0)
        sb_meta_events_free (&events, count);
    else
        SB_FUZZ_CHECK (memchr (tiny, '\0', 4));
    free (tiny);
    return 0;
}
