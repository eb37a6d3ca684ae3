/*  test_sb_scratch: request-scoped memory from a caller's buffer.

    Pieces come from the buffer, aligned, until it is full, then from
    malloc; freeing the last piece takes it back; realloc grows the last
    piece in place and moves the others; scratches nest; outside any
    scratch everything is malloc. Silent on success.
*/
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_scratch.h"

#include "sb_check.h"

static bool
s_inside (const void *ptr, const void *buf, size_t size)
{
    return (const char *) ptr >= (const char *) buf
           && (const char *) ptr < (const char *) buf + size;
}

static void
s_test_without_scratch (void)
{
    //  No scratch open: malloc and free.
    char *p = sb_scratch_alloc (10);
    CHECK (p && !sb_scratch_owns (p));
    memcpy (p, "123456789", 10);
    p = sb_scratch_realloc (p, 100000);
    CHECK (p && strcmp (p, "123456789") == 0);
    sb_scratch_free (p);
    sb_scratch_free (NULL);
    CHECK (!sb_scratch_owns (NULL));
}

static void
s_test_pieces (void)
{
    alignas (16) char buf[1024];
    sb_scratch_begin (buf, sizeof buf);
    CHECK (sb_scratch_used (buf) == 0 && sb_scratch_spills (buf) == 0);
    char *a = sb_scratch_alloc (1);
    char *b = sb_scratch_alloc (17);
    CHECK (a && b && s_inside (a, buf, sizeof buf) && s_inside (b, buf, sizeof buf));
    CHECK (sb_scratch_owns (a) && sb_scratch_owns (b));
    CHECK ((uintptr_t) a % 16 == 0 && (uintptr_t) b % 16 == 0 && b > a);
    a[0] = 'a';
    memset (b, 'b', 17);
    size_t used = sb_scratch_used (buf);
    CHECK (used > 0 && used <= sizeof buf - SB_SCRATCH_HEADER);

    //  The last piece freed is taken back: the next piece takes its place.
    sb_scratch_free (b);
    char *c = sb_scratch_alloc (17);
    CHECK (c == b);
    //  An earlier piece freed stays where it is.
    sb_scratch_free (a);
    char *d = sb_scratch_alloc (1);
    CHECK (d > c);

    //  realloc: the last piece grows in place, keeping its bytes.
    memcpy (d, "x", 1);
    char *e = sb_scratch_realloc (d, 64);
    CHECK (e == d && e[0] == 'x');
    //  Another piece moves, with its bytes.
    memcpy (c, "0123456789abcdef", 17);
    char *f = sb_scratch_realloc (c, 40);
    CHECK (f && f != c && sb_scratch_owns (f) && strcmp (f, "0123456789abcdef") == 0);

    //  Too big for what is left: malloc, and realloc moves out of the scratch.
    char *dup = sb_scratch_memdup ("abc", 4);
    CHECK (dup && sb_scratch_owns (dup) && strcmp (dup, "abc") == 0);
    sb_scratch_free (dup);
    CHECK (sb_scratch_spills (buf) == 0);
    char *big = sb_scratch_alloc (4096);
    CHECK (big && !sb_scratch_owns (big) && sb_scratch_spills (buf) == 1);
    sb_scratch_free (big);
    char *g = sb_scratch_alloc (8);
    memcpy (g, "moving", 7);
    char *h = sb_scratch_realloc (g, 8192);
    CHECK (h && !sb_scratch_owns (h) && strcmp (h, "moving") == 0);
    CHECK (sb_scratch_spills (buf) == 2);
    sb_scratch_free (h);
    CHECK (sb_scratch_used (buf) >= used);
    sb_scratch_end (buf);
    //  Closed: the buffer's pieces are no longer the scratch's.
    CHECK (!sb_scratch_owns (e));
}

static void
s_test_nesting (void)
{
    alignas (16) char outer[512], inner[512];
    sb_scratch_begin (outer, sizeof outer);
    char *a = sb_scratch_alloc (8);
    sb_scratch_begin (inner, sizeof inner);
    char *b = sb_scratch_alloc (8);
    CHECK (s_inside (a, outer, sizeof outer) && s_inside (b, inner, sizeof inner));
    //  A piece of the outer scratch is still recognized, and freeing it
    //  while the inner one is open is harmless.
    CHECK (sb_scratch_owns (a));
    sb_scratch_free (a);
    sb_scratch_end (inner);
    char *c = sb_scratch_alloc (8);
    CHECK (s_inside (c, outer, sizeof outer));
    CHECK (!sb_scratch_owns (b));
    sb_scratch_end (outer);
}

int
main (void)
{
    s_test_without_scratch ();
    s_test_pieces ();
    s_test_nesting ();
    if (s_failures) {
        fprintf (stderr, "test_sb_scratch: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
