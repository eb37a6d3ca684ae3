/*  fuzz_form: sb_form_parse, sb_form_encode and sb_form_unescape on
    arbitrary bytes (a Twilio request body, a URL query).

    Invariants, beyond "no sanitizer finding":
    - parse refuses exactly what the contract names: a '%' escape that is
      truncated, not hex or %00, a raw NUL, or more than SB_FORM_MAX_PAIRS
      pairs; anything else parses, into one pair per non-empty piece.
    - a parsed form never holds more bytes than it was given;
      sb_form_get(key) is the first pair with that key.
    - round trip: parse(encode(form)) is the same pairs in the same order,
      and encoding that again gives the same text.
    - the input cut at NUL bytes into key, value, key, value... and built
      with sb_form_add (every byte but NUL is a legal key or value) also
      survives encode then parse unchanged.
    - unescape with and without plus_is_space refuses the same inputs, and
      decodes to the same length, never longer than its input.
*/
#include <string.h>

#include "sb_form.h"
#include "sb_fuzz.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    return 0;
}

//  True when a and b hold the same pairs in the same order.
static int
s_same (const sb_form_t *a, const sb_form_t *b)
{
    if (sb_form_size (a) != sb_form_size (b))
        return 0;
    for (size_t i = 0; i < sb_form_size (a); i++)
        if (strcmp (sb_form_key (a, i), sb_form_key (b, i)) != 0
            || strcmp (sb_form_value (a, i), sb_form_value (b, i)) != 0)
            return 0;
    return 1;
}

//  Encode, parse the encoding, compare; encode again, compare texts.
static void
s_round_trip (const sb_form_t *form)
{
    char *text = sb_form_encode (form);
    SB_FUZZ_CHECK (text);
    sb_form_t *again = sb_form_parse (text, strlen (text));
    SB_FUZZ_CHECK (again);
    SB_FUZZ_CHECK (s_same (form, again));
    char *text_again = sb_form_encode (again);
    SB_FUZZ_CHECK (text_again);
    SB_FUZZ_CHECK (strcmp (text, text_again) == 0);
    free (text_again);
    sb_form_destroy (&again);
    SB_FUZZ_CHECK (again == NULL);
    free (text);
}

//  True when data holds a '%' not followed by two hex digits, or by "00".
static int
s_bad_escape (const char *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '%')
            continue;
        if (size - i < 3)
            return 1;
        const char *hex = "0123456789abcdefABCDEF";
        if (!data[i + 1] || !data[i + 2] || !strchr (hex, data[i + 1])
            || !strchr (hex, data[i + 2]))
            return 1;
        if (data[i + 1] == '0' && data[i + 2] == '0')
            return 1;
        i += 2;
    }
    return 0;
}

//  Non-empty '&'-separated pieces of data.
static size_t
s_pair_count (const char *data, size_t size)
{
    size_t count = 0, run = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '&') {
            count += run > 0;
            run = 0;
        }
        else
            run++;
    }
    return count + (run > 0);
}

static void
s_check_parse (const char *data, size_t size)
{
    sb_form_t *form = sb_form_parse (data, size);
    int refusable = memchr (data, 0, size) || s_bad_escape (data, size)
                    || s_pair_count (data, size) > SB_FORM_MAX_PAIRS;
    SB_FUZZ_CHECK ((form == NULL) == refusable);
    if (!form)
        return;
    SB_FUZZ_CHECK (sb_form_size (form) == s_pair_count (data, size));
    size_t bytes = 0;
    for (size_t i = 0; i < sb_form_size (form); i++) {
        const char *key = sb_form_key (form, i);
        const char *value = sb_form_value (form, i);
        SB_FUZZ_CHECK (key && value);
        bytes += strlen (key) + strlen (value);
        size_t first = 0;
        while (strcmp (sb_form_key (form, first), key) != 0)
            first++;
        SB_FUZZ_CHECK (sb_form_get (form, key) == sb_form_value (form, first));
    }
    SB_FUZZ_CHECK (bytes <= size);
    SB_FUZZ_CHECK (sb_form_key (form, sb_form_size (form)) == NULL);
    SB_FUZZ_CHECK (sb_form_value (form, sb_form_size (form)) == NULL);
    s_round_trip (form);
    sb_form_destroy (&form);
}

static void
s_check_unescape (const char *data, size_t size)
{
    char *plus = sb_form_unescape (data, size, 1);
    char *verbatim = sb_form_unescape (data, size, 0);
    SB_FUZZ_CHECK ((plus == NULL) == (verbatim == NULL));
    if (plus) {
        SB_FUZZ_CHECK (strlen (plus) <= size);
        SB_FUZZ_CHECK (strlen (plus) == strlen (verbatim));
        SB_FUZZ_CHECK (!memchr (data, 0, size));
    }
    free (plus);
    free (verbatim);
}

//  The input cut at NULs into key, value, key, value... (a missing last
//  value is ""), built with sb_form_add.
static void
s_check_built (const char *data, size_t size)
{
    sb_form_t *form = sb_form_new ();
    SB_FUZZ_CHECK (form);
    char *copy = malloc (size + 2);
    SB_FUZZ_CHECK (copy);
    if (size)
        memcpy (copy, data, size);
    copy[size] = '\0';
    copy[size + 1] = '\0';
    size_t added = 0;
    const char *at = copy;
    while (at < copy + size) {
        const char *key = at;
        at += strlen (at) + 1;
        const char *value = at <= copy + size ? at : "";
        if (at <= copy + size)
            at += strlen (at) + 1;
        int rc = sb_form_add (form, key, value);
        if (added < SB_FORM_MAX_PAIRS) {
            SB_FUZZ_CHECK (rc == 0);
            added++;
        }
        else
            SB_FUZZ_CHECK (rc == -1);
    }
    SB_FUZZ_CHECK (sb_form_size (form) == added);
    s_round_trip (form);
    free (copy);
    sb_form_destroy (&form);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    s_check_parse (text, size);
    s_check_unescape (text, size);
    s_check_built (text, size);
    return 0;
}
