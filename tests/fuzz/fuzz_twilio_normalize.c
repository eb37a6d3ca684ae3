/*  fuzz_twilio_normalize: arbitrary bytes parsed as a Twilio form body
    (sb_form_parse), then sb_twilio_normalize on each of the four routes,
    and each event made through the wire and JSON forms.

    Invariants, beyond "no sanitizer finding":
    - a refusal gives NULL and a non-empty reason that fits err;
    - an event is Twilio's, of the route's kind, on a named channel (voice
      for calls and gathers), with the raw body attached as the ingress
      does, and passes sb_fuzz_event_check.
*/
#include <string.h>

#include "sb_form.h"
#include "sb_fuzz.h"
#include "sb_twilio.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    return 0;
}

//  The kind each route makes.
static const struct {
    sb_twilio_route_t route;  //  the route
    int kind;                 //  the kind of its events
    const char *path;         //  its request path, as the ingress records it
} s_routes[] = {
    {SB_TWILIO_MESSAGES, SB_KIND_MESSAGE, "/twilio/messages"},
    {SB_TWILIO_STATUS, SB_KIND_STATUS, "/twilio/status"},
    {SB_TWILIO_VOICE, SB_KIND_CALL, "/twilio/voice"},
    {SB_TWILIO_GATHER, SB_KIND_GATHER, "/twilio/gather"},
};

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    sb_form_t *form = sb_form_parse ((const char *) data, size);
    if (!form)
        return 0;
    for (size_t r = 0; r < sizeof s_routes / sizeof s_routes[0]; r++) {
        //  A tiny err buffer is never overrun (ASan sees its exact size)
        char *tiny = malloc (3);
        SB_FUZZ_CHECK (tiny);
        sb_event_t *event = sb_twilio_normalize (s_routes[r].route, form, tiny, 3);
        SB_FUZZ_CHECK (event || memchr (tiny, '\0', 3));
        sb_event_destroy (&event);
        free (tiny);

        char err[160];
        memset (err, 'x', sizeof err);
        event = sb_twilio_normalize (s_routes[r].route, form, err, sizeof err);
        if (!event) {
            SB_FUZZ_CHECK (memchr (err, '\0', sizeof err) && err[0] != '\0');
            continue;
        }
        SB_FUZZ_CHECK (event->provider == SB_PROVIDER_TWILIO);
        SB_FUZZ_CHECK ((int) event->kind == s_routes[r].kind);
        SB_FUZZ_CHECK (event->channel == SB_CHANNEL_SMS || event->channel == SB_CHANNEL_WHATSAPP
                       || event->channel == SB_CHANNEL_VOICE || event->channel == SB_CHANNEL_RCS);
        if (event->kind == SB_KIND_CALL || event->kind == SB_KIND_GATHER)
            SB_FUZZ_CHECK (event->channel == SB_CHANNEL_VOICE);
        SB_FUZZ_CHECK (event->provider_id && *event->provider_id);
        sb_fuzz_event_check (event);

        //  As the ingress sends it: with the request attached
        SB_FUZZ_CHECK (sb_event_set_raw (event, data, size) == 0);
        SB_FUZZ_CHECK (sb_event_set (&event->raw_content_type, "application/x-www-form-urlencoded")
                       == 0);
        SB_FUZZ_CHECK (sb_event_set (&event->request_path, s_routes[r].path) == 0);
        sb_fuzz_event_check (event);
        sb_event_destroy (&event);
        SB_FUZZ_CHECK (event == NULL);
    }
    sb_form_destroy (&form);
    return 0;
}
