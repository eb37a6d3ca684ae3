/*  sb_text: hex, base64, URL schemes, error messages and joined strings
    (see the header). Each was once written again in the module that
    needed it; they are here so that each job has one piece of code.
*/
#include "sb_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

void
sb_text_hex (const void *data, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *bytes = data;
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * size] = 0;
}

int
sb_text_hex_value (int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
sb_text_unhex (const char *text, size_t size, void *out)
{
    unsigned char *bytes = out;
    for (size_t i = 0; i < size; i++) {
        int high = sb_text_hex_value ((unsigned char) text[2 * i]);
        int low = sb_text_hex_value ((unsigned char) text[2 * i + 1]);
        if (high < 0 || low < 0)
            return -1;
        bytes[i] = (unsigned char) (high * 16 + low);
    }
    return 0;
}

void
sb_text_base64 (const void *data, size_t size, char *out)
{
    EVP_EncodeBlock ((unsigned char *) out, data, (int) size);
}

const char *
sb_text_url_host (const char *url)
{
    if (strncmp (url, "https://", 8) == 0)
        return url + 8;
    if (strncmp (url, "http://", 7) == 0)
        return url + 7;
    return NULL;
}

void
sb_text_error (char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, err_size, fmt, args);
    va_end (args);
}

char *
sb_text_join (const char *first, ...)
{
    va_list args;
    size_t size = 1;
    va_start (args, first);
    for (const char *s = first; s; s = va_arg (args, const char *))
        size += strlen (s);
    va_end (args);
    char *out = malloc (size);
    if (!out)
        return NULL;
    size_t used = 0;
    va_start (args, first);
    for (const char *s = first; s; s = va_arg (args, const char *)) {
        size_t len = strlen (s);
        memcpy (out + used, s, len);
        used += len;
    }
    va_end (args);
    out[used] = 0;
    return out;
}
