/*  sb_pgarray: PostgreSQL binary array parameters (array_recv's format),
    one array per column of a multi-row statement. See sb_pgarray.c.

    Usage: sb_pgarray_table_init with the columns' element OIDs; add one
    element to each column per row (sb_pgarray_text, _int8, ...); then
    sb_pgarray_finish each column and pass data/size as a binary parameter
    (format 1); sb_pgarray_table_free at the end.
*/
#ifndef SB_PGARRAY_H_INCLUDED
#define SB_PGARRAY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  PostgreSQL type OIDs of the elements we send (pg_type.dat).
#define SB_PGARRAY_OID_BOOL 16
#define SB_PGARRAY_OID_BYTEA 17
#define SB_PGARRAY_OID_INT8 20
#define SB_PGARRAY_OID_INT4 23
#define SB_PGARRAY_OID_TEXT 25
#define SB_PGARRAY_OID_TIMESTAMPTZ 1184

//  Most columns a table has (and parameters a statement takes).
#define SB_PGARRAY_TABLE_MAX 20

//  One array parameter, built in place (a column of a table: add, finish).
typedef struct {
    uint8_t *data;   //  header then elements
    size_t size;     //  bytes used
    size_t cap;      //  bytes allocated
    uint32_t oid;    //  element type
    uint32_t count;  //  elements added
    bool has_null;   //  some element is NULL
    bool oom;        //  an allocation failed: the array is unusable
} sb_pgarray_t;

//  A statement's rows, one array per column.
typedef struct {
    sb_pgarray_t cols[SB_PGARRAY_TABLE_MAX];  //  one binary array per column
    int ncols;                                //  columns in use
} sb_pgarray_table_t;

//  Add one element: bytes as they are (bytea, or any type's binary form);
//  NULL; text as valid UTF-8 (NULL is ""; invalid sequences become U+FFFD),
//  at most max bytes cut on a character boundary (_text: no limit); an
//  int8, int4 or bool; a timestamptz from Unix ms.
void sb_pgarray_bytes (sb_pgarray_t *a, const void *data, size_t size);
void sb_pgarray_null (sb_pgarray_t *a);
void sb_pgarray_text_max (sb_pgarray_t *a, const char *s, size_t max);
void sb_pgarray_text (sb_pgarray_t *a, const char *s);
void sb_pgarray_int8 (sb_pgarray_t *a, int64_t v);
void sb_pgarray_int4 (sb_pgarray_t *a, int32_t v);
void sb_pgarray_bool (sb_pgarray_t *a, bool v);
void sb_pgarray_time (sb_pgarray_t *a, int64_t unix_ms);

//  Write the header: data and size are then the parameter. 0, or -1 when
//  an allocation failed (while adding or now).
int sb_pgarray_finish (sb_pgarray_t *a);

//  Columns of the given element types (ncols <= SB_PGARRAY_TABLE_MAX).
void sb_pgarray_table_init (sb_pgarray_table_t *t, const uint32_t *oids, int ncols);
void sb_pgarray_table_free (sb_pgarray_table_t *t);

//  Rows added so far (elements of the first column).
size_t sb_pgarray_table_rows (const sb_pgarray_table_t *t);

//  v as 8 bytes big-endian at p (PostgreSQL's int8 send format).
void sb_pgarray_put64 (uint8_t *p, uint64_t v);

#endif
