/*  sb_sandbox_state: what the sandbox's management APIs manage: Twilio
    phone numbers and Messaging Services, Meta app subscriptions and WABA
    subscribed apps, held as the JSON objects the APIs answer with.

    Pure: no HTTP, no civetweb, no curl (sb_sandbox_manage.c serves it), so
    the unit test drives it directly. Each call takes the state's own lock
    and returns copies the caller owns.

    A call that refuses fills an sb_sandbox_state_err_t: the HTTP status,
    the provider's error code and message; the caller answers it in the
    provider's error shape.
*/
#ifndef SB_SANDBOX_STATE_H_INCLUDED
#define SB_SANDBOX_STATE_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>

#include "sb_form.h"

#define SB_SANDBOX_STATE_NUMBERS_MAX 1000  //  Twilio numbers held
#define SB_SANDBOX_STATE_SERVICES_MAX 100  //  Messaging Services held
#define SB_SANDBOX_STATE_APPS_MAX 100      //  Meta apps held
#define SB_SANDBOX_STATE_WABAS_MAX 100     //  WABAs held

typedef struct sb_sandbox_state_t sb_sandbox_state_t;

//  Why a call refused.
typedef struct {
    int status;         //  HTTP status
    int code;           //  the provider's error code
    char message[300];  //  the provider's message
} sb_sandbox_state_err_t;

//  A state for the Twilio account account_sid ("" when unset); meta_app_id
//  is the app WABA subscriptions are made for ("0": the last app subscribed
//  through /{app-id}/subscriptions, else "1"). Both copied. NULL when out
//  of memory.
sb_sandbox_state_t *sb_sandbox_state_new (const char *account_sid, const char *meta_app_id);

//  Free the state; sets *self_p to NULL; NULL does nothing.
void sb_sandbox_state_destroy (sb_sandbox_state_t **self_p);

//  Forget everything (DELETE /_sandbox/state).
void sb_sandbox_state_clear (sb_sandbox_state_t *self);

//  Everything, as GET /_sandbox/state answers it. Caller owns it.
json_t *sb_sandbox_state_dump (sb_sandbox_state_t *self);

//  --------------------------------------------------------------------------
//  Twilio

//  The numbers, oldest first; phone_number "" or NULL lists all, else only
//  the number exactly equal to it. Caller owns the array.
json_t *sb_sandbox_state_numbers (sb_sandbox_state_t *self, const char *phone_number);

//  The number with this PN sid, or NULL (404, 20404).
json_t *sb_sandbox_state_number (sb_sandbox_state_t *self, const char *sid,
                                 sb_sandbox_state_err_t *err);

//  Apply the API's update parameters (SmsUrl, SmsMethod, SmsFallbackUrl,
//  SmsFallbackMethod, VoiceUrl, VoiceMethod, VoiceFallbackUrl,
//  VoiceFallbackMethod, StatusCallback, StatusCallbackMethod,
//  FriendlyName; others ignored) to the number with this sid, all or none.
//  The updated number, or NULL: 404 20404, 400 21402 (a URL not http(s)),
//  400 21403 (a method not GET or POST).
json_t *sb_sandbox_state_number_update (sb_sandbox_state_t *self, const char *sid,
                                        const sb_form_t *form, sb_sandbox_state_err_t *err);

//  Create the number form's PhoneNumber names, or replace the fields form
//  gives of the existing one (PhoneNumber, SmsUrl, VoiceUrl, StatusCallback,
//  SmsMethod, VoiceMethod, StatusCallbackMethod, SmsApplicationSid,
//  VoiceApplicationSid, TrunkSid). The number, or NULL: 400 21421 (not
//  +E.164), 21402, 21403, 400 21452 (past SB_SANDBOX_STATE_NUMBERS_MAX).
json_t *sb_sandbox_state_number_seed (sb_sandbox_state_t *self, const sb_form_t *form,
                                      sb_sandbox_state_err_t *err);

//  Create a Messaging Service (FriendlyName, InboundRequestUrl,
//  UseInboundWebhookOnNumber true|false, PhoneNumber repeatable: numbers
//  held). The service, or NULL: 400 21402, 400 21421 / 404 20404 (a
//  PhoneNumber not +E.164 / not held), 400 21102 (past
//  SB_SANDBOX_STATE_SERVICES_MAX).
json_t *sb_sandbox_state_service_seed (sb_sandbox_state_t *self, const sb_form_t *form,
                                       sb_sandbox_state_err_t *err);

//  The services, oldest first (without their numbers). Caller owns it.
json_t *sb_sandbox_state_services (sb_sandbox_state_t *self);

//  The service with this MG sid, or NULL (404, 20404).
json_t *sb_sandbox_state_service (sb_sandbox_state_t *self, const char *sid,
                                  sb_sandbox_state_err_t *err);

//  The service's phone numbers as its PhoneNumbers list shows them, or NULL
//  (404, 20404).
json_t *sb_sandbox_state_service_numbers (sb_sandbox_state_t *self, const char *sid,
                                          sb_sandbox_state_err_t *err);

//  --------------------------------------------------------------------------
//  Meta

//  The app's subscriptions ({object, callback_url, active, fields}), the
//  app created on first use. NULL: 400 #100 (past
//  SB_SANDBOX_STATE_APPS_MAX).
json_t *sb_sandbox_state_subscriptions (sb_sandbox_state_t *self, const char *app_id,
                                        sb_sandbox_state_err_t *err);

//  Check a subscription request (object, callback_url, fields
//  comma-separated, verify_token) before its callback is verified. 0, or
//  -1 with err (400 #100).
int sb_sandbox_state_subscribe_check (const sb_form_t *form, sb_sandbox_state_err_t *err);

//  Record the app's subscription for form's object (checked), with the
//  fields at version, replacing its earlier one for that object. 0, or -1
//  with err (past SB_SANDBOX_STATE_APPS_MAX).
int sb_sandbox_state_subscribe (sb_sandbox_state_t *self, const char *app_id, const sb_form_t *form,
                                const char *version, sb_sandbox_state_err_t *err);

//  The WABA's subscribed apps as GET subscribed_apps answers ({"data":
//  [...]}), the WABA created on first use. NULL: 400 #100 (past
//  SB_SANDBOX_STATE_WABAS_MAX).
json_t *sb_sandbox_state_subscribed_apps (sb_sandbox_state_t *self, const char *waba_id,
                                          sb_sandbox_state_err_t *err);

//  Subscribe (or unsubscribe) the token's app to the WABA. 0, or -1 with
//  err (past SB_SANDBOX_STATE_WABAS_MAX).
int sb_sandbox_state_waba_app (sb_sandbox_state_t *self, const char *waba_id, bool subscribe,
                               sb_sandbox_state_err_t *err);

//  --------------------------------------------------------------------------
//  Checks the sandbox's parts share

//  A Twilio SID: the two-letter prefix and 32 hex digits.
bool sb_sandbox_is_sid (const char *text, const char *prefix);

//  An absolute http(s) URL with a host, no spaces or control bytes, no '_'
//  in the host (Twilio refuses them in StatusCallback).
bool sb_sandbox_is_url (const char *text);

//  E.164: + and 7 to 15 digits (the shortest numbers in use), the first
//  not 0.
bool sb_sandbox_is_e164 (const char *text);

//  A Graph API id: 1 to 30 digits.
bool sb_sandbox_is_graph_id (const char *text);

//  A Graph API version segment: v<digits>.<digits>.
bool sb_sandbox_is_graph_version (const char *text);

#endif
