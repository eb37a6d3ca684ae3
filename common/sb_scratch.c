/*  sb_scratch: see sb_scratch.h.

    The scratch's bookkeeping sits at the start of the caller's buffer; the
    rest is handed out front to back. Each piece is preceded by a 16-byte
    header holding its size (sb_scratch_realloc copies that much) and is
    aligned for any type. Freeing the piece handed out last takes it back
    (a temporary freed at once costs nothing); other frees of scratch
    pieces do nothing: the whole buffer goes at sb_scratch_end.

    The current scratch is a thread-local (why: docs/internals.md,
    "Memory"), the one piece of global state here besides those STYLE.md
    lists; it holds only what the thread itself opened, on its own stack.

    Under AddressSanitizer the unused part of the buffer and the headers
    are poisoned, so reading or writing past a piece is reported as it is
    for malloc'd memory.

    Limits: a piece never moves, so a scratch never grows; what does not fit
    comes from malloc, which is always correct, only slower.
*/
#include "sb_scratch.h"

#include <assert.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define S_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_ASAN 1
#endif
#endif
#ifdef S_ASAN
#include <sanitizer/asan_interface.h>
#define S_POISON(addr, size) ASAN_POISON_MEMORY_REGION ((addr), (size))
#define S_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION ((addr), (size))
#else
#define S_POISON(addr, size) ((void) (addr), (void) (size))
#define S_UNPOISON(addr, size) ((void) (addr), (void) (size))
#endif

#define S_ALIGN 16  //  alignof (max_align_t) on the platforms we build for
#define S_PIECE 16  //  bytes of a piece's header

//  One open scratch, at the start of the caller's buffer.
typedef struct s_scratch_t {
    struct s_scratch_t *prev;  //  the scratch open before this one (NULL: none)
    char *base;                //  first byte that can be handed out
    char *end;                 //  one past the buffer
    char *next;                //  first free byte
    char *last;                //  header of the piece handed out last, NULL if taken back
    char *peak;                //  highest next so far (sb_scratch_used)
    size_t spills;             //  allocations that did not fit (sb_scratch_spills)
} s_scratch_t;

_Static_assert(sizeof (s_scratch_t) <= SB_SCRATCH_HEADER, "scratch header too small");
_Static_assert(S_ALIGN >= alignof (max_align_t), "scratch pieces under-aligned");

//  The innermost scratch this thread has open (see the note above).
static _Thread_local s_scratch_t *s_current = NULL;

void
sb_scratch_begin (void *buf, size_t size)
{
    assert (buf && size >= SB_SCRATCH_HEADER && (uintptr_t) buf % S_ALIGN == 0);
    s_scratch_t *self = (s_scratch_t *) buf;
    self->prev = s_current;
    self->base = (char *) buf + SB_SCRATCH_HEADER;
    self->end = (char *) buf + size;
    self->next = self->base;
    self->last = NULL;
    self->peak = self->base;
    self->spills = 0;
    S_POISON (self->base, (size_t) (self->end - self->base));
    s_current = self;
}

void
sb_scratch_end (void *buf)
{
    s_scratch_t *self = (s_scratch_t *) buf;
    assert (self == s_current);
    s_current = self->prev;
    S_UNPOISON (self->base, (size_t) (self->end - self->base));
}

//  The open scratch of this thread that holds ptr, or NULL.
static s_scratch_t *
s_owner (const void *ptr)
{
    const char *p = (const char *) ptr;
    for (s_scratch_t *s = s_current; s; s = s->prev)
        if (p >= s->base && p < s->end)
            return s;
    return NULL;
}

//  The size stored in a piece's header.
static size_t
s_piece_size (const char *piece)
{
    size_t size;
    S_UNPOISON (piece - S_PIECE, sizeof size);
    memcpy (&size, piece - S_PIECE, sizeof size);
    S_POISON (piece - S_PIECE, sizeof size);
    return size;
}

//  Make the piece at header (the last one of self) size bytes, when it
//  fits before the end of the buffer: its header, next and peak. False,
//  changing nothing, when it does not.
static bool
s_place (s_scratch_t *self, char *header, size_t size)
{
    size_t room = (size_t) (self->end - header);
    if (size > room)
        return false;
    size_t span = S_PIECE + ((size + S_ALIGN - 1) & ~(size_t) (S_ALIGN - 1));
    if (span > room)
        return false;
    S_UNPOISON (header, sizeof size);
    memcpy (header, &size, sizeof size);
    S_POISON (header, S_PIECE);
    self->next = header + span;
    self->last = header;
    if (self->next > self->peak)
        self->peak = self->next;
    return true;
}

void *
sb_scratch_alloc (size_t size)
{
    s_scratch_t *self = s_current;
    if (self && s_place (self, self->next, size)) {
        char *piece = self->last + S_PIECE;
        S_UNPOISON (piece, size);
        return piece;
    }
    if (self)
        self->spills++;
    return malloc (size ? size : 1);
}

void *
sb_scratch_memdup (const void *data, size_t size)
{
    void *copy = sb_scratch_alloc (size);
    if (copy && size)
        memcpy (copy, data, size);
    return copy;
}

void
sb_scratch_free (void *ptr)
{
    if (!ptr)
        return;
    s_scratch_t *owner = s_owner (ptr);
    if (!owner) {
        free (ptr);
        return;
    }
    char *header = (char *) ptr - S_PIECE;
    S_POISON (ptr, s_piece_size (ptr));
    if (owner->last == header) {
        owner->next = header;
        owner->last = NULL;
    }
}

void *
sb_scratch_realloc (void *ptr, size_t size)
{
    if (!ptr)
        return sb_scratch_alloc (size);
    s_scratch_t *owner = s_owner (ptr);
    if (!owner)
        return realloc (ptr, size ? size : 1);
    size_t old = s_piece_size (ptr);
    char *header = (char *) ptr - S_PIECE;
    //  The last piece grows or shrinks in place while it fits.
    if (owner->last == header && s_place (owner, header, size)) {
        S_POISON (ptr, old);
        S_UNPOISON (ptr, size);
        return ptr;
    }
    void *moved = sb_scratch_alloc (size);
    if (!moved)
        return NULL;
    memcpy (moved, ptr, old < size ? old : size);
    sb_scratch_free (ptr);
    return moved;
}

bool
sb_scratch_owns (const void *ptr)
{
    return ptr && s_owner (ptr) != NULL;
}

size_t
sb_scratch_used (const void *buf)
{
    const s_scratch_t *self = (const s_scratch_t *) buf;
    return (size_t) (self->peak - self->base);
}

size_t
sb_scratch_spills (const void *buf)
{
    return ((const s_scratch_t *) buf)->spills;
}
