/*  sb_twilio: a validated Twilio webhook (form parameters) into an Event.

    sb_twilio_http has checked the signature and read the parameters (a
    form, or a JSON body as one); this module only maps them to Event
    fields (see tests/conformance/twilio-webhook-params.md). It sets
    provider, channel
    (SMS, or WhatsApp from the "whatsapp:" address prefix, or voice), kind,
    message_type, provider_id, account, from/to (channel prefix removed) and
    the route's own fields. The caller sets ingress_id, received_at_ms,
    raw_body, raw_content_type, request_path and request_id.
*/
#ifndef SB_TWILIO_H_INCLUDED
#define SB_TWILIO_H_INCLUDED

#include <stddef.h>

#include "sb_event.h"
#include "sb_form.h"

typedef enum {
    SB_TWILIO_MESSAGES,  //  POST /twilio/messages: inbound SMS/WhatsApp, kind message
    SB_TWILIO_STATUS,    //  POST /twilio/status: message or call status, kind status
    SB_TWILIO_VOICE,     //  POST /twilio/voice: inbound call, kind call
    SB_TWILIO_GATHER,    //  POST /twilio/gather: Digits or SpeechResult, kind gather
} sb_twilio_route_t;

//  The event for a form posted to route. Returns NULL and writes a short
//  reason into err when the form lacks what that route needs (the caller
//  answers 400), or when memory runs out. Caller owns the return value.
sb_event_t *sb_twilio_normalize (sb_twilio_route_t route, const sb_form_t *form, char *err,
                                 size_t err_size);

#endif
