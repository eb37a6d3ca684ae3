/*  sb_scratch: request-scoped memory carved from a buffer the caller owns,
    usually on its stack, for the many small allocations of one request.

    Between sb_scratch_begin and sb_scratch_end on a thread, sb_scratch_alloc
    on that thread hands out pieces of the buffer (bump allocation, aligned
    for any type) and falls back to malloc once the buffer is full;
    sb_scratch_free ignores scratch pieces and free()s anything else. With
    no scratch open, they are malloc and free. Memory from sb_scratch_alloc
    lives at most until sb_scratch_end of the scratch open when it was
    allocated. Why the ingress does this, what it buys, and the rules a
    change must keep: docs/internals.md, "Memory".
*/
#ifndef SB_SCRATCH_H_INCLUDED
#define SB_SCRATCH_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

//  Bytes a scratch keeps for itself at the start of its buffer.
#define SB_SCRATCH_HEADER 64

//  Open a scratch on this thread over buf (size bytes, at least
//  SB_SCRATCH_HEADER, aligned to 16). Until sb_scratch_end (buf) the
//  buffer belongs to the scratch.
void sb_scratch_begin (void *buf, size_t size);

//  Close the scratch begun over buf: every piece of it is invalid from now
//  on. The scratch open before it, if any, is current again.
void sb_scratch_end (void *buf);

//  size bytes from this thread's current scratch, else from malloc. NULL
//  when out of memory. Free with sb_scratch_free.
void *sb_scratch_alloc (size_t size);

//  A copy of size bytes of data from sb_scratch_alloc, or NULL.
void *sb_scratch_memdup (const void *data, size_t size);

//  As realloc, for memory from sb_scratch_alloc (or NULL).
void *sb_scratch_realloc (void *ptr, size_t size);

//  Release memory from sb_scratch_alloc or sb_scratch_realloc (NULL: no-op).
void sb_scratch_free (void *ptr);

//  Most bytes of the scratch begun over buf in use at once so far,
//  headers included: how much of the buffer a request took.
size_t sb_scratch_used (const void *buf);

//  How many allocations, while the scratch begun over buf was the current
//  one, did not fit in it and came from malloc.
size_t sb_scratch_spills (const void *buf);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them.

//  True when ptr is in a scratch open on this thread (so free() must not
//  see it): the tests check which memory a value lives in.
bool sb_scratch_owns (const void *ptr);

#endif
