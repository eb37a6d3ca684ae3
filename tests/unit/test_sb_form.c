/*  test_sb_form: urlencoded parsing and encoding.

    Silent on success; prints file:line and what differed on failure. Run from
    tests/ (it reads conformance/twilio-*.form).
*/
#include "sb_form.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_check.h"

//  Parse a NUL-terminated string.
static sb_form_t *
s_parse (const char *text)
{
    return sb_form_parse (text, strlen (text));
}

//  Parsed form has exactly these pairs (keys and values alternating, NULL-ended).
static int
s_form_is (const sb_form_t *form, const char *const *pairs)
{
    size_t n = 0;
    while (pairs[2 * n])
        n++;
    if (!form || sb_form_size (form) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp (sb_form_key (form, i), pairs[2 * i]) != 0
            || strcmp (sb_form_value (form, i), pairs[2 * i + 1]) != 0)
            return 0;
    return 1;
}

static void
s_test_decoding (void)
{
    sb_form_t *form = s_parse ("a=%41%2b%2B%7e%7E&b=x+y%20z");
    CHECK (s_form_is (form, (const char *[]){"a", "A++~~", "b", "x y z", NULL}));
    sb_form_destroy (&form);
    CHECK (form == NULL);
    sb_form_destroy (&form);  //  destroying NULL is a no-op

    //  Keys are decoded too, '=' after the first stays in the value
    form = s_parse ("My+Key%21=v=w&%3D=eq");
    CHECK (s_form_is (form, (const char *[]){"My Key!", "v=w", "=", "eq", NULL}));
    sb_form_destroy (&form);

    //  Repeated keys kept in order; sb_form_get returns the first
    form = s_parse ("k=1&x=0&k=2&k=1");
    CHECK (s_form_is (form, (const char *[]){"k", "1", "x", "0", "k", "2", "k", "1", NULL}));
    CHECK_STR (sb_form_get (form, "k"), "1");
    CHECK_STR (sb_form_get (form, "x"), "0");
    CHECK (sb_form_get (form, "K") == NULL);
    CHECK (sb_form_get (form, "missing") == NULL);
    CHECK (sb_form_key (form, 4) == NULL);
    CHECK (sb_form_value (form, 4) == NULL);
    sb_form_destroy (&form);

    //  Empty values, key without '=', empty key, empty pairs skipped
    form = s_parse ("&a=&b&&=c&d=1&");
    CHECK (s_form_is (form, (const char *[]){"a", "", "b", "", "", "c", "d", "1", NULL}));
    CHECK_STR (sb_form_get (form, "b"), "");
    sb_form_destroy (&form);

    //  Empty text (and NULL with size 0) is an empty form
    form = sb_form_parse ("", 0);
    CHECK (form && sb_form_size (form) == 0);
    sb_form_destroy (&form);
    form = sb_form_parse (NULL, 0);
    CHECK (form && sb_form_size (form) == 0);
    sb_form_destroy (&form);
    form = s_parse ("&&&");
    CHECK (form && sb_form_size (form) == 0);
    sb_form_destroy (&form);

    //  Size is honoured: the text need not be NUL-terminated
    const char buffer[] = {'a', '=', '1', '&', 'b', '=', '2', 'X', 'X'};
    form = sb_form_parse (buffer, 7);
    CHECK (s_form_is (form, (const char *[]){"a", "1", "b", "2", NULL}));
    sb_form_destroy (&form);
    form = sb_form_parse ("a=%41", 4);  //  "a=%4": truncated by size
    CHECK (form == NULL);

    //  Non-ASCII: raw UTF-8 bytes and escaped UTF-8 both come out as bytes
    form = s_parse ("name=caf\xc3\xa9&emoji=%F0%9F%98%8A&raw=\xff\x80");
    CHECK (s_form_is (form, (const char *[]){"name", "caf\xc3\xa9", "emoji", "\xf0\x9f\x98\x8a",
                                             "raw", "\xff\x80", NULL}));
    sb_form_destroy (&form);
}

static void
s_test_refusals (void)
{
    const char *bad[] = {
        "%",       "%4",    "a=%",   "a=%4",    "a=%zz",  "a=%4g", "a=%g4", "%zz=1",
        "a=1&b=%", "a=%00", "%00=a", "a=x%00y", "a=%%41", "a=% 1", "a=%-1", "a=%+1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb_form_t *form = s_parse (bad[i]);
        if (form) {
            fprintf (stderr, "%s:%d: parse of \"%s\" should fail\n", __FILE__, __LINE__, bad[i]);
            s_failures++;
            sb_form_destroy (&form);
        }
    }
    //  A raw NUL byte would cut the C string short: refused
    const char with_nul[] = {'a', '=', 'x', 0, 'y'};
    CHECK (sb_form_parse (with_nul, sizeof with_nul) == NULL);

    //  Exactly SB_FORM_MAX_PAIRS pairs parse; one more is refused
    size_t cap = (SB_FORM_MAX_PAIRS + 1) * 16;
    char *text = (char *) malloc (cap);
    CHECK (text);
    if (!text)
        return;
    size_t size = 0;
    for (int i = 0; i < SB_FORM_MAX_PAIRS; i++)
        size += (size_t) snprintf (text + size, cap - size, "%sk%d=%d", i ? "&" : "", i, i);
    sb_form_t *form = sb_form_parse (text, size);
    CHECK (form && sb_form_size (form) == SB_FORM_MAX_PAIRS);
    CHECK_STR (sb_form_get (form, "k999"), "999");
    //  and the form is full for sb_form_add too
    CHECK (sb_form_add (form, "more", "x") == -1);
    sb_form_destroy (&form);
    size += (size_t) snprintf (text + size, cap - size, "&z=1");
    form = sb_form_parse (text, size);
    CHECK (form == NULL);
    //  ... but empty pairs do not count towards the limit
    char *sparse = (char *) malloc (size + 5000);
    CHECK (sparse);
    if (sparse) {
        memset (sparse, '&', 5000);
        size_t pairs_size = size - 4;  //  without "&z=1"
        memcpy (sparse + 5000, text, pairs_size);
        form = sb_form_parse (sparse, 5000 + pairs_size);
        CHECK (form && sb_form_size (form) == SB_FORM_MAX_PAIRS);
        sb_form_destroy (&form);
        free (sparse);
    }
    free (text);
}

static void
s_test_unescape (void)
{
    char *text = sb_form_unescape ("a+b%2Bc", 7, 0);
    CHECK_STR (text, "a+b+c");
    free (text);
    text = sb_form_unescape ("a+b%2Bc", 7, 1);
    CHECK_STR (text, "a b+c");
    free (text);
    text = sb_form_unescape ("", 0, 1);
    CHECK_STR (text, "");
    free (text);
    CHECK (sb_form_unescape ("%4", 2, 0) == NULL);
    CHECK (sb_form_unescape ("%00", 3, 0) == NULL);
    CHECK (sb_form_unescape ("%zz", 3, 0) == NULL);
}

static void
s_test_encode (void)
{
    sb_form_t *form = sb_form_new ();
    CHECK (form);
    if (!form)
        return;
    char *text = sb_form_encode (form);
    CHECK_STR (text, "");
    free (text);

    CHECK (sb_form_add (form, "To", "+15558675310") == 0);
    CHECK (sb_form_add (form, "Body", "It's 5 o'clock & 100% fine ~a-b_c.d") == 0);
    CHECK (sb_form_add (form, "Body", "caf\xc3\xa9 \xf0\x9f\x98\x8a") == 0);
    CHECK (sb_form_add (form, "a=b", "") == 0);
    CHECK (sb_form_add (form, "", "/?#[]@!$'()*,;:") == 0);
    CHECK (sb_form_add (form, NULL, "x") == -1);
    CHECK (sb_form_add (form, "x", NULL) == -1);
    CHECK (sb_form_size (form) == 5);
    text = sb_form_encode (form);
    CHECK_STR (text, "To=%2B15558675310"
                     "&Body=It%27s+5+o%27clock+%26+100%25+fine+~a-b_c.d"
                     "&Body=caf%C3%A9+%F0%9F%98%8A"
                     "&a%3Db="
                     "&=%2F%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B%3A");

    //  Round trip: parse(encode(form)) gives the same pairs
    sb_form_t *back = text ? s_parse (text) : NULL;
    CHECK (back && sb_form_size (back) == sb_form_size (form));
    for (size_t i = 0; back && i < sb_form_size (form); i++) {
        CHECK_STR (sb_form_key (back, i), sb_form_key (form, i));
        CHECK_STR (sb_form_value (back, i), sb_form_value (form, i));
    }
    sb_form_destroy (&back);
    free (text);

    //  Every byte 0x01..0xFF survives a round trip
    sb_form_t *all = sb_form_new ();
    char bytes[256];
    for (int i = 1; i < 256; i++)
        bytes[i - 1] = (char) i;
    bytes[255] = 0;
    CHECK (all && sb_form_add (all, bytes, bytes) == 0);
    text = sb_form_encode (all);
    back = text ? s_parse (text) : NULL;
    CHECK (back && sb_form_size (back) == 1);
    CHECK_STR (sb_form_key (back, 0), bytes);
    CHECK_STR (sb_form_value (back, 0), bytes);
    sb_form_destroy (&back);
    sb_form_destroy (&all);
    free (text);
    sb_form_destroy (&form);

    //  NULL forms are tolerated by the accessors
    CHECK (sb_form_size (NULL) == 0);
    CHECK (sb_form_get (NULL, "a") == NULL);
    CHECK (sb_form_key (NULL, 0) == NULL);
}

static void
s_test_conformance (void)
{
    struct {
        const char *file;   //  under conformance/
        size_t pairs;       //  expected number of pairs
        const char *key;    //  a key to spot-check
        const char *value;  //  its decoded value
        const char *key2;   //  a second one
        const char *value2;
    } cases[] = {
        {"twilio-message-status-delivered.form", 10, "To", "+14017122661", "RawDlrDoneDate",
         "2506161720"},
        {"twilio-message-status-sent.form", 9, "MessageStatus", "sent", "From", "+15558675310"},
        {"twilio-message-status-undelivered.form", 10, "ErrorCode", "30003", "MessageStatus",
         "undelivered"},
        {"twilio-sms-inbound.form", 20, "Body", "Ahoy! Let's build something amazing.", "FromCity",
         "SAN FRANCISCO"},
        {"twilio-voice-gather-dtmf.form", 12, "FinishedOnKey", "#", "msg", "Gather End"},
        {"twilio-voice-gather-speech.form", 12, "SpeechResult",
         "I would like to check my order status.", "Confidence", "0.9128386"},
        {"twilio-voice-inbound.form", 25, "CallStatus", "ringing", "CallerCity", "SAN FRANCISCO"},
        {"twilio-voice-status-completed.form", 13, "Timestamp", "Mon, 16 Jun 2025 17:20:12 +0000",
         "CallDuration", "42"},
        {"twilio-whatsapp-inbound-button.form", 19, "ButtonPayload", "postback_data_1234",
         "OriginalRepliedMessageSender", "whatsapp:+15558675310"},
        {"twilio-whatsapp-inbound-location.form", 19, "Address",
         "187 Freston Road, London, Greater London W10 6TH", "Body", ""},
        {"twilio-whatsapp-inbound-media.form", 17, "MediaUrl0",
         "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/"
         "MMb1b2c3d4e5f60718293a4b5c6d7e8f91/Media/MEe1b2c3d4e5f60718293a4b5c6d7e8f94",
         "MediaContentType0", "image/jpeg"},
        {"twilio-whatsapp-inbound-text.form", 15, "Body",
         "Hi, is the caf\xc3\xa9 open on Sunday? \xf0\x9f\x98\x8a", "To", "whatsapp:+15558675310"},
        {"twilio-whatsapp-status-failed.form", 12, "ErrorCode", "63016", "ChannelToAddress",
         "+140171XXXXX"},
        {"twilio-whatsapp-status-read.form", 11, "MessageStatus", "read", "ChannelPrefix",
         "whatsapp"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf (path, sizeof path, "conformance/%s", cases[i].file);
        size_t size = 0;
        char *data = sb_check_read_file (path, &size);
        if (!data) {
            fprintf (stderr, "%s:%d: cannot read %s (run from tests/)\n", __FILE__, __LINE__, path);
            s_failures++;
            continue;
        }
        sb_form_t *form = sb_form_parse (data, size);
        if (!form) {
            fprintf (stderr, "%s:%d: %s does not parse\n", __FILE__, __LINE__, path);
            s_failures++;
            free (data);
            continue;
        }
        if (sb_form_size (form) != cases[i].pairs) {
            fprintf (stderr, "%s:%d: %s: %zu pairs, want %zu\n", __FILE__, __LINE__, path,
                     sb_form_size (form), cases[i].pairs);
            s_failures++;
        }
        CHECK_STR (sb_form_get (form, cases[i].key), cases[i].value);
        CHECK_STR (sb_form_get (form, cases[i].key2), cases[i].value2);
        CHECK_STR (sb_form_get (form, "AccountSid"), "AC0123456789abcdef0123456789abcdef");
        //  Encoding and parsing again gives the same pairs
        char *again = sb_form_encode (form);
        sb_form_t *back = again ? s_parse (again) : NULL;
        CHECK (back && sb_form_size (back) == sb_form_size (form));
        for (size_t p = 0; back && p < sb_form_size (form); p++) {
            CHECK_STR (sb_form_key (back, p), sb_form_key (form, p));
            CHECK_STR (sb_form_value (back, p), sb_form_value (form, p));
        }
        sb_form_destroy (&back);
        free (again);
        sb_form_destroy (&form);
        free (data);
    }
}

int
main (void)
{
    s_test_decoding ();
    s_test_refusals ();
    s_test_unescape ();
    s_test_encode ();
    s_test_conformance ();
    if (s_failures) {
        fprintf (stderr, "test_sb_form: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
