/*  sb_utf8: UTF-8 validation shared by the event codec (proto3 strings must
    be valid UTF-8) and the dispatcher's store (PostgreSQL text must be). */
#ifndef SB_UTF8_H_INCLUDED
#define SB_UTF8_H_INCLUDED

#include <stddef.h>

//  Length of the valid UTF-8 sequence at s (n bytes available, n >= 1), or
//  0 when the bytes there are not one: overlong, surrogate, beyond
//  U+10FFFF, truncated, a stray continuation byte, or a NUL.
size_t sb_utf8_seq (const unsigned char *s, size_t n);

#endif
