/*  test_sb_console_web: the console's pure decisions (console/
    sb_console_web.h): loopback listen addresses, the token in a bearer
    header or the login cookie, the same-origin check of state-changing
    requests, what the page is told about an event, and SSE frames.
*/
#include "sb_check.h"
#include "sb_console_web.h"

#include <jansson.h>

static void
s_test_loopback (void)
{
    CHECK (sb_console_listen_is_loopback ("127.0.0.1:8082"));
    CHECK (sb_console_listen_is_loopback ("[::1]:8082"));
    CHECK (sb_console_listen_is_loopback ("127.0.0.1:8082,[::1]:8082"));
    CHECK (sb_console_listen_is_loopback ("127.0.0.1:8443s"));
    //  every interface, another address, a name, another loopback form
    CHECK (!sb_console_listen_is_loopback ("8082"));
    CHECK (!sb_console_listen_is_loopback ("0.0.0.0:8082"));
    CHECK (!sb_console_listen_is_loopback ("192.168.1.5:8082"));
    CHECK (!sb_console_listen_is_loopback ("localhost:8082"));
    CHECK (!sb_console_listen_is_loopback ("127.0.0.1:8082,0.0.0.0:9000"));
    CHECK (!sb_console_listen_is_loopback ("127.0.0.10:8082"));
    CHECK (!sb_console_listen_is_loopback ("127.0.0.1:"));
    CHECK (!sb_console_listen_is_loopback ("127.0.0.1:80x"));
    CHECK (!sb_console_listen_is_loopback (""));
    CHECK (!sb_console_listen_is_loopback (NULL));
}

static void
s_test_token (void)
{
    //  No token configured: everything passes.
    CHECK (sb_console_token_ok ("", NULL, NULL));
    CHECK (sb_console_token_ok (NULL, NULL, NULL));
    const char *t = "s3cret-token";
    CHECK (!sb_console_token_ok (t, NULL, NULL));
    CHECK (sb_console_token_ok (t, "Bearer s3cret-token", NULL));
    CHECK (sb_console_token_ok (t, "bearer  s3cret-token ", NULL));
    CHECK (!sb_console_token_ok (t, "Bearer s3cret-toke", NULL));
    CHECK (!sb_console_token_ok (t, "Bearer s3cret-token2", NULL));
    CHECK (!sb_console_token_ok (t, "Basic s3cret-token", NULL));
    CHECK (sb_console_token_ok (t, NULL, "sb_console=s3cret-token"));
    CHECK (sb_console_token_ok (t, NULL, "a=b; sb_console=s3cret-token; c=d"));
    CHECK (!sb_console_token_ok (t, NULL, "a=b; sb_console=wrong; c=s3cret-token"));
    CHECK (!sb_console_token_ok (t, NULL, "xsb_console=s3cret-token"));
    CHECK (!sb_console_token_ok (t, NULL, "sb_console=s3cret-token-and-more"));
    CHECK (!sb_console_token_ok (t, NULL, "sb_console="));
    CHECK (!sb_console_token_ok (t, "", ""));
}

static void
s_test_origin (void)
{
    CHECK (sb_console_same_origin ("http://127.0.0.1:8082", NULL, "127.0.0.1:8082"));
    CHECK (sb_console_same_origin ("https://console.example:443", NULL, "console.example:443"));
    CHECK (!sb_console_same_origin ("http://evil.example", NULL, "127.0.0.1:8082"));
    CHECK (!sb_console_same_origin ("http://127.0.0.1:8082.evil", NULL, "127.0.0.1:8082"));
    CHECK (!sb_console_same_origin ("null", "same-origin", "127.0.0.1:8082"));
    CHECK (!sb_console_same_origin ("http://127.0.0.1:8082", NULL, NULL));
    //  No Origin: Sec-Fetch-Site decides; neither: refused.
    CHECK (sb_console_same_origin (NULL, "same-origin", "127.0.0.1:8082"));
    CHECK (!sb_console_same_origin (NULL, "cross-site", "127.0.0.1:8082"));
    CHECK (!sb_console_same_origin (NULL, NULL, "127.0.0.1:8082"));
}

static void
s_test_notice (void)
{
    sb_event_t *e = sb_event_new ();
    CHECK (e != NULL);
    if (!e)
        return;
    e->provider = SB_PROVIDER_TWILIO;
    e->channel = SB_CHANNEL_WHATSAPP;
    e->kind = SB_KIND_MESSAGE;
    sb_event_set (&e->text, "<script>alert(1)</script>");
    sb_event_set (&e->from, "+14155550100");
    sb_event_set (&e->provider_id, "SM0001");
    sb_event_set (&e->digits, "1234");
    sb_event_media_t *m = sb_event_add_media (e);
    CHECK (m != NULL);
    if (m) {
        sb_event_set (&m->url,
                      "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1");
        sb_event_set (&m->content_type, "image/jpeg");
    }
    sb_event_set_raw (e, "Body=secret+raw", 15);
    json_t *n = sb_console_event_notice (e);
    CHECK (n != NULL);
    CHECK_STR (json_string_value (json_object_get (n, "provider")), "twilio");
    CHECK_STR (json_string_value (json_object_get (n, "channel")), "whatsapp");
    CHECK_STR (json_string_value (json_object_get (n, "kind")), "message");
    //  The text is carried as it is: the page escapes it.
    CHECK_STR (json_string_value (json_object_get (n, "text")), "<script>alert(1)</script>");
    json_t *d = json_object_get (n, "details");
    CHECK_STR (json_string_value (json_object_get (d, "digits")), "1234");
    CHECK_STR (json_string_value (json_object_get (json_array_get (json_object_get (d, "media"), 0),
                                                   "content_type")),
               "image/jpeg");
    //  No raw body in what the page is told.
    char *text = json_dumps (n, JSON_COMPACT);
    CHECK (text && !strstr (text, "secret"));
    free (text);
    json_decref (n);

    //  Through the payload, as the conversation pages read it.
    size_t size = 0;
    uint8_t *payload = sb_event_encode (e, &size);
    CHECK (payload != NULL);
    json_t *d2 = payload ? sb_console_payload_details (payload, size) : NULL;
    CHECK_STR (json_string_value (json_object_get (d2, "digits")), "1234");
    json_decref (d2);
    free (payload);
    CHECK (sb_console_payload_details ((const uint8_t *) "\xff\xff\xff", 3) == NULL);
    sb_event_destroy (&e);

    //  An event with nothing beside its text has no details.
    sb_event_t *plain = sb_event_new ();
    CHECK (plain && sb_console_event_details (plain) == NULL);
    sb_event_destroy (&plain);
}

static void
s_test_sse (void)
{
    char *f = sb_console_sse_frame ("ab.7", "event", "{\"a\":1}");
    CHECK_STR (f, "id: ab.7\nevent: event\ndata: {\"a\":1}\n\n");
    free (f);
    f = sb_console_sse_frame (NULL, "resync", "{}");
    CHECK_STR (f, "event: resync\ndata: {}\n\n");
    free (f);
    //  A line break would end the frame early: refused.
    CHECK (sb_console_sse_frame ("1", "event", "a\nb") == NULL);
    CHECK (sb_console_sse_frame ("1\n", "event", "{}") == NULL);
    CHECK (sb_console_sse_frame ("1", "ev\rent", "{}") == NULL);
}

int
main (void)
{
    s_test_loopback ();
    s_test_token ();
    s_test_origin ();
    s_test_notice ();
    s_test_sse ();
    return s_failures ? 1 : 0;
}
