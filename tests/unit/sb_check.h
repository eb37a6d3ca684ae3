/*  sb_check: the unit tests' checks, one copy for every test program.

    CHECK (cond), CHECK_STR (got, want), CHECK_STR_AS (got, want, label),
    CHECK_INT (got, want) (signed) and CHECK_EQ (a, b) (unsigned) print
    file:line and what differed, then count the failure in s_failures: a
    test runs on, reports every failure, and main exits non-zero when
    s_failures is not 0. A NULL string never equals anything.

    sb_check_read_file reads a conformance file whole.

    A test that must print elsewhere (its stderr is captured) or stop at
    the first failure defines, before including this header:
        SB_CHECK_PRINT(...)  prints a failure (default: fprintf to stderr)
        SB_CHECK_FAILED()    what a failure does then (default: count it)
*/
#ifndef SB_CHECK_H_INCLUDED
#define SB_CHECK_H_INCLUDED

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SB_CHECK_PRINT
#define SB_CHECK_PRINT(...) fprintf (stderr, __VA_ARGS__)
#endif
#ifndef SB_CHECK_FAILED
#define SB_CHECK_FAILED() (s_failures++)
#endif

//  Failed checks so far (unused by a test that stops at the first one).
static int s_failures __attribute__ ((unused)) = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            SB_CHECK_PRINT ("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            SB_CHECK_FAILED ();                                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_STR_AS(got, want, label)                                                             \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (!g_ || !w_ || strcmp (g_, w_) != 0) {                                                  \
            SB_CHECK_PRINT ("%s:%d: %s: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, label,     \
                            g_ ? g_ : "(null)", w_ ? w_ : "(null)");                               \
            SB_CHECK_FAILED ();                                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want) CHECK_STR_AS (got, want, #got)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long) (got), w_ = (long long) (want);                                 \
        if (g_ != w_) {                                                                            \
            SB_CHECK_PRINT ("%s:%d: %s: got %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); \
            SB_CHECK_FAILED ();                                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        unsigned long long a_ = (unsigned long long) (a);                                          \
        unsigned long long b_ = (unsigned long long) (b);                                          \
        if (a_ != b_) {                                                                            \
            SB_CHECK_PRINT ("%s:%d: %s == %llu, expected %s == %llu\n", __FILE__, __LINE__, #a,    \
                            a_, #b, b_);                                                           \
            SB_CHECK_FAILED ();                                                                    \
        }                                                                                          \
    } while (0)

//  Read a whole file; caller frees. NULL on error.
__attribute__ ((unused)) static char *
sb_check_read_file (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    char *data = NULL;
    size_t used = 0, cap = 0;
    for (;;) {
        if (used == cap) {
            cap = cap ? cap * 2 : 4096;
            char *grown = (char *) realloc (data, cap);
            if (!grown) {
                free (data);
                fclose (file);
                return NULL;
            }
            data = grown;
        }
        size_t got = fread (data + used, 1, cap - used, file);
        used += got;
        if (got == 0)
            break;
    }
    fclose (file);
    *size = used;
    return data;
}

#endif
