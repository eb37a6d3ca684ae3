/*  sb_json: a nesting pre-scan in front of json_loadb.

    The scan counts '[' and '{' outside strings (skipping escaped quotes)
    and stops at the first level past the cap: one linear pass without
    recursion, so it is safe on any input. It does not validate JSON; that
    is jansson's job once the depth is known to be safe.

    sb_json_use_scratch: sb_scratch_free frees with free() whatever is not
    in a scratch, so memory jansson took from malloc before the switch (or
    outside any scratch) is still freed correctly after it.
*/
#include "sb_json.h"
#include "sb_scratch.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

json_t *
sb_json_load (const char *data, size_t size, size_t max_depth, json_error_t *error)
{
    //  jansson accepts a NUL right after a literal or a number ("[true\0]");
    //  JSON has no raw NUL anywhere, and two readers must not disagree.
    if (memchr (data, 0, size)) {
        if (error) {
            memset (error, 0, sizeof *error);
            snprintf (error->text, sizeof error->text, "NUL byte in JSON text");
        }
        return NULL;
    }
    size_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        char c = data[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        }
        else if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                if (error) {
                    memset (error, 0, sizeof *error);
                    snprintf (error->text, sizeof error->text, "nested deeper than %zu levels",
                              max_depth);
                    error->position = (int) i;
                }
                return NULL;
            }
        }
        else if ((c == ']' || c == '}') && depth > 0)
            depth--;
    }
    return json_loadb (data, size, JSON_REJECT_DUPLICATES, error);
}

void
sb_json_use_scratch (void)
{
    json_set_alloc_funcs (sb_scratch_alloc, sb_scratch_free);
}

void
sb_json_free (void *text)
{
    json_free_t free_fn = NULL;
    json_get_alloc_funcs (NULL, &free_fn);
    if (text)
        free_fn (text);
}
