/*  sb_form: application/x-www-form-urlencoded bodies and URL query strings.

    Parsing keeps the pairs in request order, repeated keys included, with
    '+' decoded to space and %XX escapes decoded. A pair without '=' has an
    empty value; empty pairs ("a=1&&b=2") are skipped. It refuses what a
    careful server must not guess at: a truncated or non-hex escape, an
    escaped NUL (%00), or more than SB_FORM_MAX_PAIRS pairs.

    The same object builds forms (the CLI and the dispatcher encode with it).
    A form made while the thread has a scratch open lives in it, and must
    be destroyed before that scratch ends (sb_scratch.h).
*/
#ifndef SB_FORM_H_INCLUDED
#define SB_FORM_H_INCLUDED

#include <stddef.h>

#define SB_FORM_MAX_PAIRS 1000

typedef struct sb_form_t sb_form_t;

//  An empty form. Caller owns the return value; NULL when out of memory.
sb_form_t *sb_form_new (void);

//  Parse size bytes of urlencoded text (not NUL-terminated). Returns NULL
//  when the text is malformed (see above) or memory runs out.
//  Caller owns the return value.
sb_form_t *sb_form_parse (const char *data, size_t size);

void sb_form_destroy (sb_form_t **self_p);

//  Append a pair (copied). 0, or -1 when out of memory or full.
int sb_form_add (sb_form_t *self, const char *key, const char *value);

//  Number of pairs, and the key and value of pair index (borrowed).
size_t sb_form_size (const sb_form_t *self);
const char *sb_form_key (const sb_form_t *self, size_t index);
const char *sb_form_value (const sb_form_t *self, size_t index);

//  The first value of key, or NULL when absent (borrowed).
const char *sb_form_get (const sb_form_t *self, const char *key);

//  Encode as key=value&... with RFC 3986 unreserved characters kept, space
//  as '+', the rest %XX. Caller owns the return value; NULL when out of memory.
char *sb_form_encode (const sb_form_t *self);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them.

//  Percent-decode size bytes of one URL component into a new string ('+'
//  stays '+' unless plus_is_space). NULL when malformed, as above. The
//  decoder sb_form_parse uses, for the unit tests and fuzz_form. Caller
//  owns the return value.
char *sb_form_unescape (const char *data, size_t size, int plus_is_space);

#endif
