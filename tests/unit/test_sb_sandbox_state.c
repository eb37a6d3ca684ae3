/*  test_sb_sandbox_state: what the sandbox's management APIs hold, driven
    directly: numbers created, filtered exactly, updated all-or-nothing with
    Twilio's refusals; services and their numbers; Meta subscriptions
    replaced per object; WABA apps; the bounds; the dump and clear; the
    shared checks. The objects' keys are checked against the providers'
    examples in tests/conformance/provider-api/.
*/
#include <jansson.h>

#include "sb_check.h"
#include "sb_sandbox_state.h"


#define ACCOUNT "AC0123456789abcdef0123456789abcdef"

static sb_form_t *
s_form (const char *text)
{
    return sb_form_parse (text, strlen (text));
}

//  True when object has exactly the keys of the example file's object (at
//  pointer: NULL for the top level, else a key holding an array whose
//  first element is compared).
static bool
s_same_keys (json_t *object, const char *file, const char *list_key)
{
    char path[256];
    snprintf (path, sizeof path, "conformance/provider-api/%s", file);
    json_error_t error;
    json_t *example = json_load_file (path, 0, &error);
    if (!example) {
        fprintf (stderr, "cannot read %s: %s\n", path, error.text);
        return false;
    }
    json_t *want = list_key ? json_array_get (json_object_get (example, list_key), 0) : example;
    bool same = json_object_size (want) == json_object_size (object);
    const char *key;
    json_t *value;
    json_object_foreach (want, key, value)
        if (!json_object_get (object, key)) {
            fprintf (stderr, "%s: missing key %s\n", file, key);
            same = false;
        }
    json_decref (example);
    return same;
}

static void
s_test_checks (void)
{
    CHECK (sb_sandbox_is_e164 ("+14155550100"));
    CHECK (!sb_sandbox_is_e164 ("14155550100"));
    CHECK (!sb_sandbox_is_e164 ("+0415555010"));
    CHECK (!sb_sandbox_is_e164 ("+1415"));
    CHECK (!sb_sandbox_is_e164 (NULL));
    CHECK (sb_sandbox_is_graph_id ("188559381496048"));
    CHECK (!sb_sandbox_is_graph_id ("12a"));
    CHECK (!sb_sandbox_is_graph_id (""));
    CHECK (sb_sandbox_is_graph_version ("v23.0"));
    CHECK (!sb_sandbox_is_graph_version ("v23"));
    CHECK (!sb_sandbox_is_graph_version ("23.0"));
    CHECK (!sb_sandbox_is_graph_version ("v23.0x"));
    CHECK (sb_sandbox_is_url ("https://hooks.example.test/twilio/messages"));
    CHECK (!sb_sandbox_is_url ("ftp://hooks.example.test/"));
    CHECK (sb_sandbox_is_sid (ACCOUNT, "AC"));
}

static void
s_test_numbers (void)
{
    sb_sandbox_state_t *state = sb_sandbox_state_new (ACCOUNT, "0");
    sb_sandbox_state_err_t err = {0};
    sb_form_t *form = s_form ("PhoneNumber=%2B14155550100");
    json_t *number = sb_sandbox_state_number_seed (state, form, &err);
    sb_form_destroy (&form);
    CHECK (number != NULL);
    CHECK (s_same_keys (number, "twilio-incoming-phone-number.json", NULL));
    CHECK_STR (json_string_value (json_object_get (number, "sms_url")), "");
    CHECK_STR (json_string_value (json_object_get (number, "friendly_name")), "(415) 555-0100");
    CHECK_STR (json_string_value (json_object_get (number, "account_sid")), ACCOUNT);
    const char *sid = json_string_value (json_object_get (number, "sid"));
    CHECK (sb_sandbox_is_sid (sid, "PN"));
    char pn[40];
    snprintf (pn, sizeof pn, "%s", sid);
    json_decref (number);

    form = s_form ("PhoneNumber=%2B14155550199&SmsUrl=https%3A%2F%2Fold.example.test%2Fsms");
    json_decref (sb_sandbox_state_number_seed (state, form, &err));
    sb_form_destroy (&form);

    //  The filter is exact: a prefix or another number matches nothing.
    json_t *list = sb_sandbox_state_numbers (state, "+14155550100");
    CHECK_EQ (json_array_size (list), 1);
    json_decref (list);
    list = sb_sandbox_state_numbers (state, "+1415555010");
    CHECK_EQ (json_array_size (list), 0);
    json_decref (list);
    list = sb_sandbox_state_numbers (state, NULL);
    CHECK_EQ (json_array_size (list), 2);
    json_decref (list);

    //  Update: all or nothing.
    form = s_form ("SmsUrl=https%3A%2F%2Fh.example.test%2Ftwilio%2Fmessages&SmsMethod=POST"
                   "&VoiceUrl=ftp%3A%2F%2Fbad&Unknown=1");
    CHECK (sb_sandbox_state_number_update (state, pn, form, &err) == NULL);
    CHECK_INT (err.status, 400);
    CHECK_INT (err.code, 21402);
    sb_form_destroy (&form);
    number = sb_sandbox_state_number (state, pn, &err);
    CHECK_STR (json_string_value (json_object_get (number, "sms_url")), "");
    json_decref (number);

    form = s_form ("StatusCallbackMethod=PUT");
    CHECK (sb_sandbox_state_number_update (state, pn, form, &err) == NULL);
    CHECK_INT (err.code, 21403);
    sb_form_destroy (&form);

    form = s_form ("SmsUrl=https%3A%2F%2Fh.example.test%2Ftwilio%2Fmessages&SmsMethod=get"
                   "&StatusCallback=https%3A%2F%2Fh.example.test%2Ftwilio%2Fstatus&Unknown=1");
    number = sb_sandbox_state_number_update (state, pn, form, &err);
    sb_form_destroy (&form);
    CHECK_STR (json_string_value (json_object_get (number, "sms_url")),
               "https://h.example.test/twilio/messages");
    CHECK_STR (json_string_value (json_object_get (number, "sms_method")), "GET");
    CHECK_STR (json_string_value (json_object_get (number, "status_callback")),
               "https://h.example.test/twilio/status");
    CHECK (json_object_get (number, "Unknown") == NULL);
    json_decref (number);

    form = s_form ("SmsUrl=https%3A%2F%2Fx.example.test%2F");
    CHECK (sb_sandbox_state_number_update (state, "PN00000000000000000000000000000000", form, &err)
           == NULL);
    CHECK_INT (err.status, 404);
    CHECK_INT (err.code, 20404);
    sb_form_destroy (&form);

    //  Seeding an existing number replaces only the fields given.
    form = s_form ("PhoneNumber=%2B14155550100&VoiceUrl=https%3A%2F%2Fv.example.test%2F"
                   "&TrunkSid=TK0123456789abcdef0123456789abcdef");
    number = sb_sandbox_state_number_seed (state, form, &err);
    sb_form_destroy (&form);
    CHECK_STR (json_string_value (json_object_get (number, "sid")), pn);
    CHECK_STR (json_string_value (json_object_get (number, "sms_url")),
               "https://h.example.test/twilio/messages");
    CHECK_STR (json_string_value (json_object_get (number, "trunk_sid")),
               "TK0123456789abcdef0123456789abcdef");
    json_decref (number);

    form = s_form ("PhoneNumber=4155550100");
    CHECK (sb_sandbox_state_number_seed (state, form, &err) == NULL);
    CHECK_INT (err.code, 21421);
    sb_form_destroy (&form);

    //  The bound.
    for (int i = 3; i <= SB_SANDBOX_STATE_NUMBERS_MAX; i++) {
        char text[64];
        snprintf (text, sizeof text, "PhoneNumber=%%2B1555%07d", i);
        form = s_form (text);
        number = sb_sandbox_state_number_seed (state, form, &err);
        CHECK (number != NULL);
        json_decref (number);
        sb_form_destroy (&form);
    }
    form = s_form ("PhoneNumber=%2B15559999999");
    CHECK (sb_sandbox_state_number_seed (state, form, &err) == NULL);
    CHECK_INT (err.status, 400);
    CHECK_INT (err.code, 21452);
    sb_form_destroy (&form);
    list = sb_sandbox_state_numbers (state, NULL);
    CHECK_EQ (json_array_size (list), SB_SANDBOX_STATE_NUMBERS_MAX);
    json_decref (list);

    sb_sandbox_state_clear (state);
    list = sb_sandbox_state_numbers (state, NULL);
    CHECK_EQ (json_array_size (list), 0);
    json_decref (list);
    sb_sandbox_state_destroy (&state);
    CHECK (state == NULL);
    sb_sandbox_state_destroy (&state);
}

static void
s_test_services (void)
{
    sb_sandbox_state_t *state = sb_sandbox_state_new (ACCOUNT, "0");
    sb_sandbox_state_err_t err = {0};
    sb_form_t *form = s_form ("PhoneNumber=%2B14155550100");
    json_t *number = sb_sandbox_state_number_seed (state, form, &err);
    sb_form_destroy (&form);

    form = s_form ("FriendlyName=Main&InboundRequestUrl=https%3A%2F%2Fsvc.example.test%2Fin"
                   "&UseInboundWebhookOnNumber=false&PhoneNumber=%2B14155550100");
    json_t *service = sb_sandbox_state_service_seed (state, form, &err);
    sb_form_destroy (&form);
    CHECK (service != NULL);
    CHECK (s_same_keys (service, "twilio-messaging-service.json", NULL));
    CHECK_STR (json_string_value (json_object_get (service, "inbound_request_url")),
               "https://svc.example.test/in");
    CHECK (json_is_false (json_object_get (service, "use_inbound_webhook_on_number")));
    const char *mg = json_string_value (json_object_get (service, "sid"));
    CHECK (sb_sandbox_is_sid (mg, "MG"));

    json_t *members = sb_sandbox_state_service_numbers (state, mg, &err);
    CHECK_EQ (json_array_size (members), 1);
    json_t *member = json_array_get (members, 0);
    CHECK (s_same_keys (member, "twilio-messaging-service-phone-numbers.json", "phone_numbers"));
    CHECK_STR (json_string_value (json_object_get (member, "sid")),
               json_string_value (json_object_get (number, "sid")));
    CHECK_STR (json_string_value (json_object_get (member, "phone_number")), "+14155550100");
    json_decref (members);

    json_t *services = sb_sandbox_state_services (state);
    CHECK_EQ (json_array_size (services), 1);
    CHECK (s_same_keys (json_array_get (services, 0), "twilio-messaging-services-list.json",
                        "services"));
    json_decref (services);

    form = s_form ("FriendlyName=Other&PhoneNumber=%2B14155550111");
    CHECK (sb_sandbox_state_service_seed (state, form, &err) == NULL);
    CHECK_INT (err.status, 404);
    sb_form_destroy (&form);
    form = s_form ("UseInboundWebhookOnNumber=yes");
    CHECK (sb_sandbox_state_service_seed (state, form, &err) == NULL);
    CHECK_INT (err.status, 400);
    sb_form_destroy (&form);

    CHECK (sb_sandbox_state_service_numbers (state, "MG00000000000000000000000000000000", &err)
           == NULL);
    CHECK_INT (err.code, 20404);

    for (int i = 1; i < SB_SANDBOX_STATE_SERVICES_MAX; i++) {
        form = s_form ("FriendlyName=more");
        json_decref (sb_sandbox_state_service_seed (state, form, &err));
        sb_form_destroy (&form);
    }
    form = s_form ("FriendlyName=one+too+many");
    CHECK (sb_sandbox_state_service_seed (state, form, &err) == NULL);
    CHECK_INT (err.code, 21102);
    sb_form_destroy (&form);

    json_t *dump = sb_sandbox_state_dump (state);
    json_t *first =
        json_array_get (json_object_get (json_object_get (dump, "twilio"), "services"), 0);
    CHECK_EQ (json_array_size (json_object_get (first, "phone_numbers")), 1);
    json_decref (dump);
    json_decref (service);
    json_decref (number);
    sb_sandbox_state_destroy (&state);
}

static void
s_test_meta (void)
{
    sb_sandbox_state_t *state = sb_sandbox_state_new (ACCOUNT, "0");
    sb_sandbox_state_err_t err = {0};
    json_t *data = sb_sandbox_state_subscriptions (state, "1234", &err);
    CHECK_EQ (json_array_size (data), 0);
    json_decref (data);

    sb_form_t *form = s_form ("object=whatsapp_business_account&callback_url=https%3A%2F%2Fh."
                              "example.test%2Fmeta%2Fwhatsapp&fields=messages%2C+calls"
                              "&verify_token=v");
    CHECK_INT (sb_sandbox_state_subscribe_check (form, &err), 0);
    CHECK_INT (sb_sandbox_state_subscribe (state, "1234", form, "v23.0", &err), 0);
    sb_form_destroy (&form);
    form = s_form ("object=whatsapp_business_account&callback_url=https%3A%2F%2Fnew.example.test"
                   "%2Fmeta%2Fwhatsapp&fields=messages&verify_token=v");
    CHECK_INT (sb_sandbox_state_subscribe (state, "1234", form, "v23.0", &err), 0);
    sb_form_destroy (&form);
    data = sb_sandbox_state_subscriptions (state, "1234", &err);
    CHECK_EQ (json_array_size (data), 1);
    json_t *subscription = json_array_get (data, 0);
    CHECK (s_same_keys (subscription, "meta-app-subscriptions.json", "data"));
    CHECK_STR (json_string_value (json_object_get (subscription, "callback_url")),
               "https://new.example.test/meta/whatsapp");
    json_t *field = json_array_get (json_object_get (subscription, "fields"), 0);
    CHECK_STR (json_string_value (json_object_get (field, "name")), "messages");
    CHECK_STR (json_string_value (json_object_get (field, "version")), "v23.0");
    json_decref (data);

    static const char *bad[] = {
        "callback_url=https%3A%2F%2Fh.example.test%2F&fields=messages&verify_token=v",
        "object=car&callback_url=https%3A%2F%2Fh.example.test%2F&fields=messages&verify_token=v",
        "object=page&callback_url=nope&fields=messages&verify_token=v",
        "object=page&callback_url=https%3A%2F%2Fh.example.test%2F&fields=%2C&verify_token=v",
        "object=page&callback_url=https%3A%2F%2Fh.example.test%2F&fields=Bad!&verify_token=v",
        "object=page&callback_url=https%3A%2F%2Fh.example.test%2F&fields=messages",
        NULL};
    for (int i = 0; bad[i]; i++) {
        form = s_form (bad[i]);
        CHECK_INT (sb_sandbox_state_subscribe_check (form, &err), -1);
        CHECK_INT (err.code, 100);
        sb_form_destroy (&form);
    }

    //  WABA: the app last subscribed (1234), once however often.
    CHECK_INT (sb_sandbox_state_waba_app (state, "5678", true, &err), 0);
    CHECK_INT (sb_sandbox_state_waba_app (state, "5678", true, &err), 0);
    data = sb_sandbox_state_subscribed_apps (state, "5678", &err);
    json_t *apps = json_object_get (data, "data");
    CHECK_EQ (json_array_size (apps), 1);
    json_t *app = json_object_get (json_array_get (apps, 0), "whatsapp_business_api_data");
    CHECK_STR (json_string_value (json_object_get (app, "id")), "1234");
    CHECK (s_same_keys (json_array_get (apps, 0), "meta-subscribed-apps.json", "data"));
    json_decref (data);
    CHECK_INT (sb_sandbox_state_waba_app (state, "5678", false, &err), 0);
    data = sb_sandbox_state_subscribed_apps (state, "5678", &err);
    CHECK_EQ (json_array_size (json_object_get (data, "data")), 0);
    json_decref (data);

    //  Bounds: apps and WABAs are created on first use, up to 100.
    for (int i = 0; i < SB_SANDBOX_STATE_APPS_MAX; i++) {
        char id[16];
        snprintf (id, sizeof id, "%d", 100 + i);
        json_decref (sb_sandbox_state_subscriptions (state, id, &err));
        json_decref (sb_sandbox_state_subscribed_apps (state, id, &err));
    }
    CHECK (sb_sandbox_state_subscriptions (state, "99999", &err) == NULL);
    CHECK_INT (err.status, 400);
    CHECK_INT (err.code, 100);
    CHECK (sb_sandbox_state_subscribed_apps (state, "99999", &err) == NULL);
    CHECK_INT (sb_sandbox_state_waba_app (state, "99999", true, &err), -1);

    json_t *dump = sb_sandbox_state_dump (state);
    CHECK_EQ (json_array_size (json_object_get (json_object_get (dump, "meta"), "apps")),
              SB_SANDBOX_STATE_APPS_MAX);
    json_decref (dump);
    sb_sandbox_state_destroy (&state);

    //  --meta-app-id names the app.
    state = sb_sandbox_state_new (ACCOUNT, "777");
    CHECK_INT (sb_sandbox_state_waba_app (state, "5678", true, &err), 0);
    data = sb_sandbox_state_subscribed_apps (state, "5678", &err);
    app = json_object_get (json_array_get (json_object_get (data, "data"), 0),
                           "whatsapp_business_api_data");
    CHECK_STR (json_string_value (json_object_get (app, "id")), "777");
    json_decref (data);
    sb_sandbox_state_destroy (&state);
}

int
main (void)
{
    s_test_checks ();
    s_test_numbers ();
    s_test_services ();
    s_test_meta ();
    return s_failures ? 1 : 0;
}
