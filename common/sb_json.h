/*  sb_json: jansson parsing of untrusted bytes with a nesting cap.

    jansson recurses once per nesting level and allows 2048 levels, which
    overflows the small stacks of civetweb's worker threads. sb_json_load
    refuses anything nested deeper than max_depth before jansson sees it.

    sb_json_use_scratch routes jansson's allocations, process-wide, through
    sb_scratch: what that buys the ingress and the rules it sets for every
    jansson user are in docs/internals.md, "Memory".
*/
#ifndef SB_JSON_H_INCLUDED
#define SB_JSON_H_INCLUDED

#include <jansson.h>
#include <stddef.h>

//  Webhook payloads nest about 8 levels; 64 leaves room and stays cheap.
#define SB_JSON_MAX_DEPTH 64

//  Parse size bytes (duplicate keys refused). NULL, with error filled, when
//  the text is not JSON or nests deeper than max_depth.
//  Caller owns the return value (json_decref).
json_t *sb_json_load (const char *data, size_t size, size_t max_depth, json_error_t *error);

//  From now on jansson allocates with sb_scratch_alloc and frees with
//  sb_scratch_free, for the whole process. Call once at start, before any
//  thread uses jansson (docs/internals.md, "Memory").
void sb_json_use_scratch (void);

//  Free text from json_dumps (or anything jansson allocated), with the
//  free function jansson allocates with.
void sb_json_free (void *text);

#endif
