/*  sb_pgarray: PostgreSQL binary array parameters, built in memory.

    The store's write path sends each column of a multi-row statement as
    one parameter, a binary array that the statement unnest()s server-side:
    a batch of any size is one statement per table, and no value is ever
    spliced into SQL. This module builds those arrays in the format of
    PostgreSQL's array_recv: a header (ndim, has-null flag, element type,
    then size and lower bound of the one dimension), then each element as
    a 4-byte length (-1 for NULL) and its bytes in the type's binary format
    (send/recv functions), all integers big-endian.

    Text elements are sent as valid UTF-8: any invalid sequence becomes
    U+FFFD, so bytes from a provider can never make a batch fail forever.
    A failed allocation is remembered (the array is then unusable) and
    reported once, by sb_pgarray_finish: callers add elements without
    checking each one.

    Limits. One dimension; the element types the store uses (bool, bytea,
    int8, int4, text, timestamptz; their OIDs below).
*/
#include "sb_pgarray.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "sb_utf8.h"

//  Unix ms of PostgreSQL's epoch, 2000-01-01 00:00:00 UTC.
#define S_PG_EPOCH_MS 946684800000LL

//  Bytes of the header of a one-dimensional array.
#define S_ARRAY_HEADER 20

//  An empty array of elements of type oid; s_array_free releases it.
static void
s_array_init (sb_pgarray_t *a, uint32_t oid)
{
    memset (a, 0, sizeof (*a));
    a->oid = oid;
    a->size = S_ARRAY_HEADER;
}

static void
s_array_free (sb_pgarray_t *a)
{
    free (a->data);
    a->data = NULL;
}

static uint8_t *
s_array_room (sb_pgarray_t *a, size_t more)
{
    if (a->oom)
        return NULL;
    if (a->size + more > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (cap < a->size + more)
            cap *= 2;
        uint8_t *data = realloc (a->data, cap);
        if (!data) {
            a->oom = true;
            return NULL;
        }
        a->data = data;
        a->cap = cap;
    }
    return a->data + a->size;
}

static void
s_put32 (uint8_t *p, uint32_t v)
{
    v = htonl (v);
    memcpy (p, &v, 4);
}

void
sb_pgarray_put64 (uint8_t *p, uint64_t v)
{
    s_put32 (p, (uint32_t) (v >> 32));
    s_put32 (p + 4, (uint32_t) v);
}

void
sb_pgarray_bytes (sb_pgarray_t *a, const void *data, size_t size)
{
    uint8_t *p = s_array_room (a, 4 + size);
    if (!p)
        return;
    s_put32 (p, (uint32_t) size);
    if (size)
        memcpy (p + 4, data, size);
    a->size += 4 + size;
    a->count++;
}

void
sb_pgarray_null (sb_pgarray_t *a)
{
    uint8_t *p = s_array_room (a, 4);
    if (!p)
        return;
    s_put32 (p, 0xFFFFFFFFu);
    a->size += 4;
    a->count++;
    a->has_null = true;
}

//  A text element: s as valid UTF-8 (NULL is ""), at most max bytes (cut
//  on a character boundary).
void
sb_pgarray_text_max (sb_pgarray_t *a, const char *s, size_t max)
{
    s = s ? s : "";
    size_t n = strlen (s);
    uint8_t *p = s_array_room (a, 4 + n * 3);
    if (!p)
        return;
    const unsigned char *in = (const unsigned char *) s;
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t len = sb_utf8_seq (in + i, n - i);
        if (len) {
            //  copy the whole valid run at once
            size_t run = len;
            while (i + run < n && (len = sb_utf8_seq (in + i + run, n - i - run)))
                run += len;
            if (out + run > max) {
                //  the longest prefix of the run that fits
                size_t fit = 0;
                while (fit < run && (len = sb_utf8_seq (in + i + fit, run - fit))
                       && out + fit + len <= max)
                    fit += len;
                memcpy (p + 4 + out, in + i, fit);
                out += fit;
                break;
            }
            memcpy (p + 4 + out, in + i, run);
            out += run;
            i += run;
        }
        else {
            if (out + 3 > max)
                break;
            memcpy (p + 4 + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        }
    }
    s_put32 (p, (uint32_t) out);
    a->size += 4 + out;
    a->count++;
}

void
sb_pgarray_text (sb_pgarray_t *a, const char *s)
{
    sb_pgarray_text_max (a, s, SIZE_MAX);
}

void
sb_pgarray_int8 (sb_pgarray_t *a, int64_t v)
{
    uint8_t b[8];
    sb_pgarray_put64 (b, (uint64_t) v);
    sb_pgarray_bytes (a, b, 8);
}

void
sb_pgarray_int4 (sb_pgarray_t *a, int32_t v)
{
    uint8_t b[4];
    s_put32 (b, (uint32_t) v);
    sb_pgarray_bytes (a, b, 4);
}

void
sb_pgarray_bool (sb_pgarray_t *a, bool v)
{
    uint8_t b = v ? 1 : 0;
    sb_pgarray_bytes (a, &b, 1);
}

//  A timestamptz from Unix ms: microseconds since 2000-01-01 UTC.
void
sb_pgarray_time (sb_pgarray_t *a, int64_t unix_ms)
{
    sb_pgarray_int8 (a, (unix_ms - S_PG_EPOCH_MS) * 1000);
}

//  Write the header. 0, or -1 when an allocation failed.
int
sb_pgarray_finish (sb_pgarray_t *a)
{
    if (!s_array_room (a, 0))
        return -1;
    uint8_t *p = a->data;
    s_put32 (p, a->count ? 1 : 0);
    s_put32 (p + 4, a->has_null ? 1 : 0);
    s_put32 (p + 8, a->oid);
    if (a->count) {
        s_put32 (p + 12, a->count);
        s_put32 (p + 16, 1);
    }
    else
        a->size = 12;
    return 0;
}

//  A statement's rows, one array per column.
void
sb_pgarray_table_init (sb_pgarray_table_t *t, const uint32_t *oids, int ncols)
{
    t->ncols = ncols;
    for (int i = 0; i < ncols; i++)
        s_array_init (&t->cols[i], oids[i]);
}

void
sb_pgarray_table_free (sb_pgarray_table_t *t)
{
    for (int i = 0; i < t->ncols; i++)
        s_array_free (&t->cols[i]);
}

size_t
sb_pgarray_table_rows (const sb_pgarray_table_t *t)
{
    return t->ncols ? t->cols[0].count : 0;
}
