/*  test_sb_json: jansson behind a nesting cap, and through the scratch.

    sb_json_load refuses nesting past the cap (brackets inside strings and
    escaped quotes do not count), NUL bytes, duplicate keys and non-JSON;
    accepts what is within the cap. After sb_json_use_scratch, a tree and
    json_dumps text made inside a scratch live in it (no malloc), are
    freed with sb_json_free, and outside a scratch jansson uses malloc as
    before; memory jansson took before the switch is still freed right.
    Silent on success.
*/
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_json.h"
#include "sb_scratch.h"

#include "sb_check.h"

//  text nested depth levels deep: [[[...]]] (caller frees).
static char *
s_nested (size_t depth)
{
    char *text = malloc (2 * depth + 1);
    memset (text, '[', depth);
    memset (text + depth, ']', depth);
    text[2 * depth] = '\0';
    return text;
}

static void
s_test_load (void)
{
    json_error_t error;
    json_t *root = sb_json_load ("{\"a\":[1,{\"b\":\"x\"}]}", 19, 4, &error);
    CHECK (root && json_is_array (json_object_get (root, "a")));
    json_decref (root);

    //  The cap: depth levels pass, one more fails with a reason.
    char *text = s_nested (8);
    root = sb_json_load (text, strlen (text), 8, &error);
    CHECK (root);
    json_decref (root);
    free (text);
    text = s_nested (9);
    CHECK (sb_json_load (text, strlen (text), 8, &error) == NULL);
    CHECK (strstr (error.text, "nested deeper than 8"));
    free (text);
    //  A deep text is refused before jansson recurses into it.
    text = s_nested (100000);
    CHECK (sb_json_load (text, strlen (text), SB_JSON_MAX_DEPTH, NULL) == NULL);
    free (text);

    //  Brackets in strings, and escaped quotes, do not nest.
    const char *quoted = "[\"[[[[\\\"[[[[\",\"{{{{\"]";
    root = sb_json_load (quoted, strlen (quoted), 2, &error);
    CHECK (root && json_array_size (root) == 2);
    json_decref (root);

    //  NUL bytes (even where jansson would stop reading), duplicates, junk.
    CHECK (sb_json_load ("[true\0]", 7, 4, &error) == NULL);
    CHECK (strstr (error.text, "NUL"));
    CHECK (sb_json_load ("{\"a\":1,\"a\":2}", 13, 4, &error) == NULL);
    CHECK (sb_json_load ("{\"a\":", 5, 4, &error) == NULL);
    CHECK (sb_json_load ("", 0, 4, &error) == NULL);
}

static void
s_test_scratch (void)
{
    //  Made with malloc before the switch, freed after it.
    json_t *before = json_pack ("{s:s}", "key", "made before");
    char *before_text = json_dumps (before, JSON_COMPACT);
    CHECK (before && before_text && !sb_scratch_owns (before_text));

    sb_json_use_scratch ();

    alignas (16) char scratch[8192];
    sb_scratch_begin (scratch, sizeof scratch);
    const char *body = "{\"entry\":[{\"id\":\"1\",\"changes\":[{\"value\":{\"x\":[1,2,3]}}]}]}";
    json_t *root = sb_json_load (body, strlen (body), SB_JSON_MAX_DEPTH, NULL);
    CHECK (root && sb_scratch_owns (root));
    char *text = json_dumps (root, JSON_COMPACT);
    CHECK (text && sb_scratch_owns (text) && strcmp (text, body) == 0);
    CHECK (sb_scratch_spills (scratch) == 0 && sb_scratch_used (scratch) > 0);
    sb_json_free (text);
    json_decref (root);
    //  Freed inside the scratch: what jansson had before is still good.
    json_decref (before);
    sb_json_free (before_text);
    sb_scratch_end (scratch);

    //  Outside any scratch: malloc, as before the switch.
    root = json_pack ("[i,s]", 1, "two");
    text = json_dumps (root, JSON_COMPACT);
    CHECK (root && text && !sb_scratch_owns (text) && strcmp (text, "[1,\"two\"]") == 0);
    sb_json_free (text);
    json_decref (root);
    sb_json_free (NULL);
}

int
main (void)
{
    s_test_load ();
    s_test_scratch ();
    if (s_failures) {
        fprintf (stderr, "test_sb_json: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
