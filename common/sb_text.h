/*  sb_text: the small text jobs several modules share, each done once:
    hex in and out, base64 out, the scheme of an http(s) URL, an error
    message into a caller's buffer, and strings joined into a new one.

    Pure functions on caller memory, no state, safe from any thread.
    Base64 is OpenSSL's EVP_EncodeBlock (standard alphabet, '=' padding).
*/
#ifndef SB_TEXT_H_INCLUDED
#define SB_TEXT_H_INCLUDED

#include <stddef.h>

//  Room for the base64 of size bytes, NUL included.
#define SB_TEXT_BASE64_SIZE(size) (((size) + 2) / 3 * 4 + 1)

//  Lower-case hex of size bytes into out (2 * size + 1 bytes, NUL-terminated).
void sb_text_hex (const void *data, size_t size, char *out);

//  The value of one hex digit (either case), or -1 when c is not one.
int sb_text_hex_value (int c);

//  The 2 * size hex digits (either case) at text as size bytes into out.
//  0, or -1 when one of them is not a hex digit (out is then undefined).
int sb_text_unhex (const char *text, size_t size, void *out);

//  Base64 of size bytes into out (SB_TEXT_BASE64_SIZE (size) bytes,
//  NUL-terminated). size must be below INT_MAX (OpenSSL counts in int).
void sb_text_base64 (const void *data, size_t size, char *out);

//  Where the host begins in url when it starts "http://" or "https://"
//  (borrowed from url), else NULL. Checks the scheme only: callers check
//  what else they need of the rest.
const char *sb_text_url_host (const char *url);

//  Format an error message into err (err_size bytes, truncated to fit);
//  does nothing when err is NULL or err_size is 0: for functions that
//  take an optional "char *err, size_t err_size" pair.
void sb_text_error (char *err, size_t err_size, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  The strings up to the terminating NULL, joined in a new string.
//  Caller owns the return value; NULL when out of memory.
char *sb_text_join (const char *first, ...) __attribute__ ((sentinel));

#endif
