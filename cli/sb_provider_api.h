/*  sb_provider_api: the providers' management APIs that `switchboard
    connect` changes and `switchboard doctor` reads: a Twilio number's
    webhook URLs (IncomingPhoneNumbers), its Messaging Service (read only),
    a Meta app's webhook subscription and a WABA's subscribed apps; and the
    webhook URLs of this install (SB_PUBLIC_URL + SB_PATH_PREFIX + route)
    that both compare them with.

    Every call is one blocking libcurl easy transfer with a deadline (the
    timeout given to sb_provider_api_new) and an answer capped at
    SB_PROVIDER_API_MAX_ANSWER bytes. A call returns 0 and the provider's
    JSON (caller owns it), or -1 with a one-line reason in err that quotes
    the provider's own error: "Twilio answered 404: code 20404: The
    requested resource ... was not found" or "Meta answered 400: code 2200
    (OAuthException): Callback verification failed ...".

    Dry run: the calls that change something (sb_provider_api_*_update,
    *_subscribe) print the request they would send to the dry-run stream
    instead of sending it and return 0 with *answer NULL; reads still go out.
*/
#ifndef SB_PROVIDER_API_H_INCLUDED
#define SB_PROVIDER_API_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "sb_config.h"

#define SB_PROVIDER_API_MAX_ANSWER (4 * 1024 * 1024)  //  answer bytes kept
#define SB_PROVIDER_API_URL_SIZE 2048                 //  a webhook URL's buffer

typedef struct sb_provider_api_t sb_provider_api_t;

//  ---- This install's webhook URLs ------------------------------------

//  How far the host of url reaches: loopback, a private network, public.
typedef enum {
    SB_URL_LOOPBACK,
    SB_URL_PRIVATE,
    SB_URL_PUBLIC,
} sb_url_scope_t;

//  The scope of url's host (no host: SB_URL_PRIVATE).
sb_url_scope_t sb_provider_api_url_scope (const char *url);

//  The host of url (without port or brackets) into out.
void sb_provider_api_url_host (const char *url, char *out, size_t size);

//  Whether the providers may be given SB_PUBLIC_URL: set, and https unless
//  its host is loopback. 0, or -1 with why in err.
int sb_provider_api_public_url_check (const sb_config_t *config, char *err, size_t err_size);

//  The ingress's routes (common/sb_routes.h): SB_PROVIDER_R_TWILIO_MESSAGES, ...
typedef enum {
#define SB_ROUTE(id, path, metric, allow, use) SB_PROVIDER_##id,
#include "sb_routes.h"
#undef SB_ROUTE
} sb_provider_route_t;

//  The webhook URL of route: SB_PUBLIC_URL + SB_PATH_PREFIX + its path,
//  into out.
void sb_provider_api_webhook_url (const sb_config_t *config, sb_provider_route_t route, char *out,
                                  size_t size);

//  The fields of Meta's whatsapp_business_account webhook that the ingress
//  turns into kinds of their own (ingress/sb_meta.c), comma-separated,
//  "messages" first (static).
const char *sb_provider_api_meta_fields (void);

//  ---- Calls ------------------------------------------------------------

//  A client for the settings of config (borrowed: it must outlive the
//  client), each call bounded by timeout seconds. dry_run: where the
//  changing calls print their request instead of sending it, or NULL to
//  send. Caller owns the return value; NULL when out of memory.
sb_provider_api_t *sb_provider_api_new (const sb_config_t *config, double timeout, FILE *dry_run);

void sb_provider_api_destroy (sb_provider_api_t **self_p);

//  Whether the settings for Twilio's API are present: TWILIO_ACCOUNT_SID
//  and TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET. When
//  not, the missing variable's name (static) in *missing.
bool sb_provider_api_twilio_ready (const sb_config_t *config, const char **missing);

//  Twilio: the IncomingPhoneNumber whose phone_number is number (GET
//  IncomingPhoneNumbers.json?PhoneNumber=). 0 with *found NULL when the
//  account has no such number. Caller owns *found.
int sb_provider_api_twilio_number (sb_provider_api_t *self, const char *number, json_t **found,
                                   char *err, size_t err_size);

//  Twilio: set the number's SmsUrl, VoiceUrl and StatusCallback, each with
//  method POST (POST IncomingPhoneNumbers/{sid}.json). *after: the updated
//  number object (caller owns; NULL in a dry run).
int sb_provider_api_twilio_number_update (sb_provider_api_t *self, const char *sid,
                                          const char *sms_url, const char *voice_url,
                                          const char *status_callback, json_t **after, char *err,
                                          size_t err_size);

//  Twilio Messaging API: the service that has the number (GET /v1/Services,
//  then each one's PhoneNumbers), with its "phone_numbers" left out. 0 with
//  *found NULL when no service has it. Caller owns *found.
int sb_provider_api_twilio_service_of (sb_provider_api_t *self, const char *number, json_t **found,
                                       char *err, size_t err_size);

//  Meta: the app's subscription for object whatsapp_business_account (GET
//  /{app-id}/subscriptions with the app access token), 0 with *found NULL
//  when it has none. Caller owns *found.
int sb_provider_api_meta_app_subscription (sb_provider_api_t *self, const char *app_id,
                                           json_t **found, char *err, size_t err_size);

//  Meta: subscribe the app to whatsapp_business_account webhooks at
//  callback_url with fields (comma-separated) and META_VERIFY_TOKEN (POST
//  /{app-id}/subscriptions). Meta then calls callback_url's GET handshake.
int sb_provider_api_meta_app_subscribe (sb_provider_api_t *self, const char *app_id,
                                        const char *callback_url, const char *fields, char *err,
                                        size_t err_size);

//  Meta: the WABA's subscribed apps, the "data" array (GET
//  /{waba-id}/subscribed_apps with META_ACCESS_TOKEN). Caller owns *apps.
int sb_provider_api_meta_waba_apps (sb_provider_api_t *self, const char *waba_id, json_t **apps,
                                    char *err, size_t err_size);

//  Meta: subscribe the app that owns META_ACCESS_TOKEN to the WABA (POST
//  /{waba-id}/subscribed_apps).
int sb_provider_api_meta_waba_subscribe (sb_provider_api_t *self, const char *waba_id, char *err,
                                         size_t err_size);

//  The string member key of object, "" when absent or null (borrowed).
const char *sb_provider_api_str (const json_t *object, const char *key);

#endif
