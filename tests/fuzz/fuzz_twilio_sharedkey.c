/*  fuzz_twilio_sharedkey: Twilio's shared-key settings on arbitrary bytes.

    Input: keys NUL header [NUL signature]
    keys is a TWILIO_WEBHOOK_SHARED_KEYS value (parsed by sb_sig_keys_new),
    header an X-Twilio-Webhooks-Signature-Settings value (read by
    sb_sig_twilio_settings and sb_sig_twilio_check), signature the
    X-Twilio-Signature checked with them over a fixed URL and form. A
    missing part is absent (NULL). The corpus (make_corpus.py) holds the
    shared-key vectors of tests/conformance/twilio-sharedkey-vectors.json.

    Invariants, beyond "no sanitizer finding":
    - sb_sig_keys_new gives keys (at most SB_SIG_KEYS_MAX) or a problem, never
      both nor neither.
    - the settings' verdict is ok, bad_settings, unknown_key or
      unknown_algorithm; ok only with keys, and then a non-empty secret.
    - sb_sig_twilio_check gives that verdict unless it is ok; when ok, what
      sb_sig_twilio_sign_with makes with that secret and algorithm validates.
*/
#include <string.h>

#include "sb_form.h"
#include "sb_fuzz.h"
#include "sb_sig.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    sb_fuzz_quiet ();
    return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *copy = malloc (size + 1);
    SB_FUZZ_CHECK (copy);
    if (size)
        memcpy (copy, data, size);
    copy[size] = 0;
    //  Up to three NUL-separated parts
    const char *parts[3] = {copy, NULL, NULL};
    size_t at = strlen (copy);
    for (int i = 1; i < 3 && at < size; i++) {
        parts[i] = copy + at + 1;
        at += 1 + strlen (parts[i]);
    }
    const char *problem = NULL;
    sb_sig_keys_t *keys = sb_sig_keys_new (parts[0], &problem);
    SB_FUZZ_CHECK ((keys != NULL) != (problem != NULL));
    SB_FUZZ_CHECK (sb_sig_keys_size (keys) <= SB_SIG_KEYS_MAX);

    const char *secret = NULL;
    sb_sig_algorithm_t algorithm = SB_SIG_HMAC_SHA1;
    sb_sig_result_t verdict = sb_sig_twilio_settings (parts[1], keys, &secret, &algorithm);
    SB_FUZZ_CHECK (verdict == SB_SIG_OK || verdict == SB_SIG_BAD_SETTINGS
                   || verdict == SB_SIG_UNKNOWN_KEY || verdict == SB_SIG_UNKNOWN_ALGORITHM);
    SB_FUZZ_CHECK (verdict != SB_SIG_OK || (keys && secret && *secret));

    const char *url = "https://h.example/twilio/messages";
    const char *body = "From=rcs%3A%2B15550001111&Body=hi";
    sb_form_t *form = sb_form_parse (body, strlen (body));
    SB_FUZZ_CHECK (form);
    if (parts[1]) {
        sb_sig_result_t checked =
            sb_sig_twilio_check ("token", keys, parts[1], url, form, NULL, 0, parts[2]);
        SB_FUZZ_CHECK (verdict == SB_SIG_OK ? checked != SB_SIG_BAD_SETTINGS : checked == verdict);
        if (verdict == SB_SIG_OK) {
            char signature[SB_SIG_TWILIO256_SIZE];
            SB_FUZZ_CHECK (sb_sig_twilio_sign_with (secret, algorithm, url, form, signature) == 0);
            SB_FUZZ_CHECK (
                sb_sig_twilio_check ("token", keys, parts[1], url, form, NULL, 0, signature)
                == SB_SIG_OK);
        }
    }
    sb_form_destroy (&form);
    sb_sig_keys_destroy (&keys);
    free (copy);
    return 0;
}
