/*  sb_form: application/x-www-form-urlencoded bodies and URL query strings.

    A form is an ordered array of (key, value) pairs, each a NUL-terminated
    copy owned by the form. Parsing splits on '&', then on the first '=', and
    decodes each side ('+' is a space, %XX a byte). Both sides come out as C
    strings, which is why a NUL byte is refused: an escaped %00, and also a raw
    NUL in the input (it would silently cut the string short). Bytes >= 0x80
    are kept as they are; the form does not check UTF-8.

    Limits: at most SB_FORM_MAX_PAIRS pairs, parsed or added. The caller caps
    the size of the text (the HTTP layer caps bodies); a form never holds more
    bytes than it was given plus one NUL per string.

    Memory: a form and its strings come from sb_scratch_alloc
    (docs/internals.md, "Memory"); what a function returns to its caller
    to free() (sb_form_unescape, sb_form_encode) is plain malloc.
*/
#include "sb_form.h"

#include <stdlib.h>
#include <string.h>

#include "sb_scratch.h"
#include "sb_text.h"

//  One pair of the form.
typedef struct {
    char *key;    //  decoded key, owned
    char *value;  //  decoded value, owned ("" when the pair had no '=')
} s_pair_t;

struct sb_form_t {
    s_pair_t *pairs;  //  pairs in request order
    size_t size;      //  pairs in use
    size_t capacity;  //  pairs allocated
};

sb_form_t *
sb_form_new (void)
{
    sb_form_t *self = (sb_form_t *) sb_scratch_alloc (sizeof (sb_form_t));
    if (self)
        memset (self, 0, sizeof *self);
    return self;
}

void
sb_form_destroy (sb_form_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_form_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++) {
        sb_scratch_free (self->pairs[i].key);
        sb_scratch_free (self->pairs[i].value);
    }
    sb_scratch_free (self->pairs);
    sb_scratch_free (self);
    *self_p = NULL;
}

//  Make room for one more pair. 0, or -1 when full or out of memory.
static int
s_reserve (sb_form_t *self)
{
    if (self->size >= SB_FORM_MAX_PAIRS)
        return -1;
    if (self->size < self->capacity)
        return 0;
    size_t capacity = self->capacity ? self->capacity * 2 : 16;
    if (capacity > SB_FORM_MAX_PAIRS)
        capacity = SB_FORM_MAX_PAIRS;
    s_pair_t *pairs = (s_pair_t *) sb_scratch_realloc (self->pairs, capacity * sizeof (s_pair_t));
    if (!pairs)
        return -1;
    self->pairs = pairs;
    self->capacity = capacity;
    return 0;
}

//  A copy of text from sb_scratch_alloc, or NULL.
static char *
s_strdup (const char *text)
{
    return (char *) sb_scratch_memdup (text, strlen (text) + 1);
}

//  Take ownership of key and value (both freed on failure).
static int
s_append (sb_form_t *self, char *key, char *value)
{
    if (!key || !value || s_reserve (self)) {
        sb_scratch_free (key);
        sb_scratch_free (value);
        return -1;
    }
    self->pairs[self->size].key = key;
    self->pairs[self->size].value = value;
    self->size++;
    return 0;
}

int
sb_form_add (sb_form_t *self, const char *key, const char *value)
{
    if (!self || !key || !value)
        return -1;
    return s_append (self, s_strdup (key), s_strdup (value));
}

size_t
sb_form_size (const sb_form_t *self)
{
    return self ? self->size : 0;
}

const char *
sb_form_key (const sb_form_t *self, size_t index)
{
    if (!self || index >= self->size)
        return NULL;
    return self->pairs[index].key;
}

const char *
sb_form_value (const sb_form_t *self, size_t index)
{
    if (!self || index >= self->size)
        return NULL;
    return self->pairs[index].value;
}

const char *
sb_form_get (const sb_form_t *self, const char *key)
{
    if (!self || !key)
        return NULL;
    for (size_t i = 0; i < self->size; i++)
        if (strcmp (self->pairs[i].key, key) == 0)
            return self->pairs[i].value;
    return NULL;
}

//  sb_form_unescape into memory from alloc (released with release).
static char *
s_unescape (const char *data, size_t size, int plus_is_space, void *(*alloc) (size_t),
            void (*release) (void *))
{
    if (!data && size)
        return NULL;
    //  Decoded text is never longer than the input
    char *out = (char *) alloc (size + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) data[i];
        if (c == '%') {
            if (size - i < 3)
                goto malformed;
            int high = sb_text_hex_value ((unsigned char) data[i + 1]);
            int low = sb_text_hex_value ((unsigned char) data[i + 2]);
            if (high < 0 || low < 0)
                goto malformed;
            c = (unsigned char) (high * 16 + low);
            if (c == 0)
                goto malformed;
            i += 2;
        }
        else if (c == '+' && plus_is_space)
            c = ' ';
        else if (c == 0)
            goto malformed;
        out[o++] = (char) c;
    }
    out[o] = 0;
    return out;

malformed:
    release (out);
    return NULL;
}

char *
sb_form_unescape (const char *data, size_t size, int plus_is_space)
{
    return s_unescape (data, size, plus_is_space, malloc, free);
}

sb_form_t *
sb_form_parse (const char *data, size_t size)
{
    if (!data && size)
        return NULL;
    sb_form_t *self = sb_form_new ();
    if (!self)
        return NULL;
    size_t start = 0;
    while (start < size) {
        const char *pair = data + start;
        const char *amp = (const char *) memchr (pair, '&', size - start);
        size_t pair_size = amp ? (size_t) (amp - pair) : size - start;
        start += pair_size + 1;
        if (pair_size == 0)
            continue;  //  "a=1&&b=2": empty pairs are skipped
        const char *eq = (const char *) memchr (pair, '=', pair_size);
        size_t key_size = eq ? (size_t) (eq - pair) : pair_size;
        char *key = s_unescape (pair, key_size, 1, sb_scratch_alloc, sb_scratch_free);
        char *value =
            eq ? s_unescape (eq + 1, pair_size - key_size - 1, 1, sb_scratch_alloc, sb_scratch_free)
               : s_strdup ("");
        if (s_append (self, key, value)) {
            sb_form_destroy (&self);
            return NULL;
        }
    }
    return self;
}

//  RFC 3986 unreserved characters
static int
s_unreserved (unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
           || c == '.' || c == '_' || c == '~';
}

//  Bytes needed to encode text
static size_t
s_encoded_size (const char *text)
{
    size_t size = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        size += (s_unreserved (*p) || *p == ' ') ? 1 : 3;
    return size;
}

//  Write the encoding of text at out, return the end.
static char *
s_encode_into (char *out, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *) text; *p; p++) {
        if (s_unreserved (*p))
            *out++ = (char) *p;
        else if (*p == ' ')
            *out++ = '+';
        else {
            *out++ = '%';
            *out++ = hex[*p >> 4];
            *out++ = hex[*p & 15];
        }
    }
    return out;
}

char *
sb_form_encode (const sb_form_t *self)
{
    size_t size = 1;  //  NUL
    size_t pairs = self ? self->size : 0;
    for (size_t i = 0; i < pairs; i++)
        size += s_encoded_size (self->pairs[i].key) + 1 + s_encoded_size (self->pairs[i].value) + 1;
    char *text = (char *) malloc (size);
    if (!text)
        return NULL;
    char *out = text;
    for (size_t i = 0; i < pairs; i++) {
        if (i)
            *out++ = '&';
        out = s_encode_into (out, self->pairs[i].key);
        *out++ = '=';
        out = s_encode_into (out, self->pairs[i].value);
    }
    *out = 0;
    return text;
}
