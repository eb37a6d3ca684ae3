/*  fuzz_console_web: the console's checks of request headers (console/
    sb_console_web.h) on arbitrary bytes: an Authorization header, a Cookie
    header, an Origin, Sec-Fetch-Site and Host, and a listen value.

    Input: authorization NUL cookie NUL origin NUL host NUL listen (missing
    parts are absent headers).

    Invariants, beyond "no sanitizer finding":
    - the token "T0k-en" is accepted only when the Authorization header is
      "Bearer" and exactly it (spaces around allowed), or a cookie piece is
      exactly sb_console=T0k-en;
    - with no token configured, everything is accepted;
    - same origin holds only when origin is http(s)://host, or absent with
      Sec-Fetch-Site same-origin;
    - a listen value judged loopback names only 127.0.0.1 or [::1];
    - an SSE frame is refused exactly when a part holds a line break.
*/
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "sb_console_web.h"
#include "sb_fuzz.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    return 0;
}

#define S_TOKEN "T0k-en"

//  The cookie header holds the piece sb_console=S_TOKEN.
static bool
s_cookie_has (const char *cookie)
{
    const char *want = SB_CONSOLE_COOKIE "=" S_TOKEN;
    size_t n = strlen (want);
    for (const char *p = cookie; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr (p, ';');
        size_t size = end ? (size_t) (end - p) : strlen (p);
        if (size == n && !memcmp (p, want, n))
            return true;
        p = end;
    }
    return false;
}

static bool
s_bearer_is (const char *authorization)
{
    if (!authorization || strncasecmp (authorization, "Bearer ", 7))
        return false;
    const char *v = authorization + 7;
    while (*v == ' ')
        v++;
    size_t size = strlen (v);
    while (size && v[size - 1] == ' ')
        size--;
    return size == strlen (S_TOKEN) && !memcmp (v, S_TOKEN, size);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *copy = malloc (size + 1);
    if (!copy)
        return 0;
    memcpy (copy, data, size);
    copy[size] = 0;
    //  Split at NULs into up to five parts.
    const char *part[5] = {NULL, NULL, NULL, NULL, NULL};
    size_t n = 0;
    const char *p = copy;
    while (n < 5 && p <= copy + size) {
        part[n++] = p;
        p += strlen (p) + 1;
    }
    const char *authorization = part[0], *cookie = part[1], *origin = part[2], *host = part[3];
    const char *listen = part[4];

    bool ok = sb_console_token_ok (S_TOKEN, authorization, cookie);
    SB_FUZZ_CHECK (ok == (s_bearer_is (authorization) || s_cookie_has (cookie)));
    SB_FUZZ_CHECK (sb_console_token_ok ("", authorization, cookie));

    bool same = sb_console_same_origin (origin, cookie, host);
    if (same && origin) {
        const char *rest = !strncmp (origin, "http://", 7)    ? origin + 7
                           : !strncmp (origin, "https://", 8) ? origin + 8
                                                              : NULL;
        SB_FUZZ_CHECK (rest && host && !strcasecmp (rest, host));
    }
    SB_FUZZ_CHECK (sb_console_same_origin (NULL, cookie, host)
                   == (cookie && !strcmp (cookie, "same-origin")));

    if (listen && sb_console_listen_is_loopback (listen))
        for (const char *q = listen; q;) {
            SB_FUZZ_CHECK (!strncmp (q, "127.0.0.1:", 10) || !strncmp (q, "[::1]:", 6));
            q = strchr (q, ',');
            q = q ? q + 1 : NULL;
        }

    char *frame = sb_console_sse_frame (origin, host, authorization ? authorization : "");
    bool breaks = (authorization && strpbrk (authorization, "\r\n"))
                  || (origin && strpbrk (origin, "\r\n")) || (host && strpbrk (host, "\r\n"));
    SB_FUZZ_CHECK ((frame == NULL) == breaks);
    free (frame);
    free (copy);
    return 0;
}
