/*  test_sb_text: hex both ways, base64 with its padding, the http(s)
    scheme check, the optional error buffer and joined strings.

    Reads as the module's usage example. Silent on success.
*/
#include "sb_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb_check.h"

static void
s_test_hex (void)
{
    const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char hex[2 * sizeof bytes + 1];
    sb_text_hex (bytes, sizeof bytes, hex);
    CHECK_STR (hex, "00017f80abff");
    sb_text_hex (bytes, 0, hex);
    CHECK_STR (hex, "");

    //  Every digit, either case; everything else is not one.
    for (int c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        CHECK_INT (sb_text_hex_value (c), want);
    }

    //  Back again, upper case too; a non-digit anywhere is refused.
    uint8_t back[sizeof bytes];
    CHECK (sb_text_unhex ("00017F80abFF", sizeof back, back) == 0);
    CHECK (memcmp (back, bytes, sizeof bytes) == 0);
    CHECK (sb_text_unhex ("00017f80abfg", sizeof back, back) == -1);
    CHECK (sb_text_unhex (" 0017f80abff", sizeof back, back) == -1);
    CHECK (sb_text_unhex ("", 0, back) == 0);
}

static void
s_test_base64 (void)
{
    //  RFC 4648's vectors: one, two or no '=' of padding.
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"hi!?", "aGkhPw=="},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[SB_TEXT_BASE64_SIZE (8)];
        sb_text_base64 (cases[i].in, strlen (cases[i].in), out);
        CHECK_STR_AS (out, cases[i].out, cases[i].in);
        CHECK (strlen (out) + 1 == SB_TEXT_BASE64_SIZE (strlen (cases[i].in)));
    }
    //  Binary: the standard alphabet's '+' and '/'.
    const uint8_t binary[] = {0xfb, 0xff, 0xbf};
    char out[SB_TEXT_BASE64_SIZE (sizeof binary)];
    sb_text_base64 (binary, sizeof binary, out);
    CHECK_STR (out, "+/+/");
}

static void
s_test_url_host (void)
{
    const char *url = "https://hooks.example.com/x";
    CHECK (sb_text_url_host (url) == url + 8);
    url = "http://127.0.0.1:8090";
    CHECK (sb_text_url_host (url) == url + 7);
    CHECK_STR (sb_text_url_host ("http://"), "");  //  the scheme only: the rest is the caller's
    CHECK (sb_text_url_host ("ftp://example.com") == NULL);
    CHECK (sb_text_url_host ("HTTP://example.com") == NULL);
    CHECK (sb_text_url_host ("https:/example.com") == NULL);
    CHECK (sb_text_url_host ("") == NULL);
}

static void
s_test_error (void)
{
    char err[16] = "untouched";
    sb_text_error (err, sizeof err, "bad %s at %d", "NumMedia", 7);
    CHECK_STR (err, "bad NumMedia at");  //  truncated to fit
    sb_text_error (err, sizeof err, "out of memory");
    CHECK_STR (err, "out of memory");
    sb_text_error (NULL, 0, "nowhere %d", 1);  //  no buffer: nothing happens
    strcpy (err, "kept");
    sb_text_error (err, 0, "nowhere");
    CHECK_STR (err, "kept");
}

static void
s_test_join (void)
{
    char *joined = sb_text_join ("https://api.example.com", "/2010-04-01/Accounts/", "AC1",
                                 "/Messages.json", NULL);
    CHECK_STR (joined, "https://api.example.com/2010-04-01/Accounts/AC1/Messages.json");
    free (joined);
    joined = sb_text_join ("", "a", "", NULL);
    CHECK_STR (joined, "a");
    free (joined);
    joined = sb_text_join ("alone", NULL);
    CHECK_STR (joined, "alone");
    free (joined);
}

int
main (void)
{
    s_test_hex ();
    s_test_base64 ();
    s_test_url_host ();
    s_test_error ();
    s_test_join ();
    if (s_failures) {
        fprintf (stderr, "test_sb_text: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
