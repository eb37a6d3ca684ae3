/*  sb_json: jansson parsing of untrusted bytes with a nesting cap.

    jansson recurses once per nesting level and allows 2048 levels, which
    overflows the small stacks of civetweb's worker threads. sb_json_load
    refuses anything nested deeper than max_depth before jansson sees it.
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

#endif
