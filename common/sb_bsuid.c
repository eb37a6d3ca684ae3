/*  sb_bsuid: the shape of WhatsApp business-scoped user ids (see
    sb_bsuid.h). The shape follows Meta's "Business-scoped user IDs" page
    (a country code, a period, up to 128 alphanumerics; parents with
    "ENT."); the country is checked for being two upper-case letters, not
    against the ISO list, which Meta may extend.
*/
#include "sb_bsuid.h"

#include <string.h>

static bool
s_upper (char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool
s_alnum (char c)
{
    return s_upper (c) || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool
sb_bsuid_like (const char *text)
{
    return text && ((text[0] >= 'A' && text[0] <= 'Z') || (text[0] >= 'a' && text[0] <= 'z'))
           && ((text[1] >= 'A' && text[1] <= 'Z') || (text[1] >= 'a' && text[1] <= 'z'))
           && text[2] == '.';
}

bool
sb_bsuid_valid (const char *text)
{
    if (!text || !s_upper (text[0]) || !s_upper (text[1]) || text[2] != '.')
        return false;
    const char *id = text + 3;
    if (strncmp (id, "ENT.", 4) == 0)
        id += 4;
    size_t n = 0;
    for (; id[n]; n++)
        if (!s_alnum (id[n]) || n >= SB_BSUID_MAX_ID)
            return false;
    return n > 0;
}
