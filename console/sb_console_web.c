/*  sb_console_web: the console's pure decisions and shapes (see
    sb_console_web.h). Nothing here reads a socket, the database or a
    clock; the HTTP module (sb_console_http.c) applies them.

    Limits: a listen value is judged as civetweb reads it ("[host:]port",
    with "[v6]" in brackets); a name such as localhost is not trusted to be
    loopback (it resolves at run time).
*/
#include "sb_console_web.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

//  One listening_ports entry of size bytes is loopback.
static bool
s_entry_is_loopback (const char *entry, size_t size)
{
    static const char *hosts[] = {"127.0.0.1:", "[::1]:"};
    for (size_t h = 0; h < sizeof hosts / sizeof hosts[0]; h++) {
        size_t n = strlen (hosts[h]);
        if (size > n && !strncmp (entry, hosts[h], n)) {
            //  The rest is a port and at most one option letter.
            size_t digits = 0;
            while (n + digits < size && entry[n + digits] >= '0' && entry[n + digits] <= '9')
                digits++;
            size_t rest = size - n - digits;
            return digits > 0 && digits <= 5
                   && (rest == 0
                       || (rest == 1 && (entry[size - 1] == 's' || entry[size - 1] == 'r')));
        }
    }
    return false;
}

bool
sb_console_listen_is_loopback (const char *listen)
{
    if (!listen || !*listen)
        return false;
    const char *p = listen;
    for (;;) {
        const char *comma = strchr (p, ',');
        size_t size = comma ? (size_t) (comma - p) : strlen (p);
        if (!s_entry_is_loopback (p, size))
            return false;
        if (!comma)
            return true;
        p = comma + 1;
    }
}

//  value equals token, in time independent of where they differ.
static bool
s_equal (const char *value, size_t size, const char *token)
{
    size_t n = strlen (token);
    return size == n && CRYPTO_memcmp (value, token, n) == 0;
}

bool
sb_console_token_ok (const char *token, const char *authorization, const char *cookie)
{
    if (!token || !*token)
        return true;
    if (authorization && !strncasecmp (authorization, "Bearer ", 7)) {
        const char *v = authorization + 7;
        while (*v == ' ')
            v++;
        size_t size = strlen (v);
        while (size > 0 && v[size - 1] == ' ')
            size--;
        if (s_equal (v, size, token))
            return true;
    }
    //  Cookie: name=value; name=value (RFC 6265 section 4.2.1).
    const char *p = cookie;
    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr (p, ';');
        size_t size = end ? (size_t) (end - p) : strlen (p);
        size_t name = strlen (SB_CONSOLE_COOKIE);
        if (size > name && !strncmp (p, SB_CONSOLE_COOKIE, name) && p[name] == '='
            && s_equal (p + name + 1, size - name - 1, token))
            return true;
        p = end;
    }
    return false;
}

bool
sb_console_same_origin (const char *origin, const char *sec_fetch_site, const char *host)
{
    if (!origin)
        return sec_fetch_site && !strcmp (sec_fetch_site, "same-origin");
    if (!host || !*host)
        return false;
    const char *rest = !strncmp (origin, "http://", 7)    ? origin + 7
                       : !strncmp (origin, "https://", 8) ? origin + 8
                                                          : NULL;
    return rest && !strcasecmp (rest, host);
}

static void
s_set_text (json_t *o, const char *key, const char *value)
{
    if (value && *value)
        json_object_set_new (o, key, json_string (value));
}

//  A string of an event as JSON text only where it is valid UTF-8: the
//  event codec checks every string it decodes (sb_utf8), so json_string
//  does not fail on them; a failure leaves the key out.
json_t *
sb_console_event_details (const sb_event_t *e)
{
    json_t *d = json_object ();
    if (!d)
        return NULL;
    if (e->n_media) {
        json_t *list = json_array ();
        for (size_t i = 0; list && i < e->n_media; i++) {
            const sb_event_media_t *m = e->media[i];
            json_t *o = json_object ();
            if (!o)
                break;
            s_set_text (o, "url", m->url);
            s_set_text (o, "content_type", m->content_type);
            s_set_text (o, "caption", m->caption);
            s_set_text (o, "filename", m->filename);
            s_set_text (o, "id", m->id);
            json_array_append_new (list, o);
        }
        if (list)
            json_object_set_new (d, "media", list);
    }
    if (e->location) {
        json_t *o = json_object ();
        if (o) {
            json_object_set_new (o, "latitude", json_real (e->location->latitude));
            json_object_set_new (o, "longitude", json_real (e->location->longitude));
            s_set_text (o, "name", e->location->name);
            s_set_text (o, "address", e->location->address);
            s_set_text (o, "url", e->location->url);
            s_set_text (o, "label", e->location->label);
            json_object_set_new (d, "location", o);
        }
    }
    s_set_text (d, "digits", e->digits);
    s_set_text (d, "speech", e->speech_result);
    if (e->interactive) {
        json_t *o = json_object ();
        if (o) {
            s_set_text (o, "type", e->interactive->type);
            s_set_text (o, "id", e->interactive->id);
            s_set_text (o, "title", e->interactive->title);
            json_object_set_new (d, "interactive", o);
        }
    }
    if (e->reaction) {
        json_t *o = json_object ();
        if (o) {
            s_set_text (o, "emoji", e->reaction->emoji);
            s_set_text (o, "message_id", e->reaction->message_id);
            json_object_set_new (d, "reaction", o);
        }
    }
    if (json_object_size (d) == 0) {
        json_decref (d);
        return NULL;
    }
    return d;
}

json_t *
sb_console_payload_details (const uint8_t *payload, size_t size)
{
    sb_event_t *e = sb_event_decode (payload, size);
    if (!e)
        return NULL;
    json_t *d = sb_console_event_details (e);
    sb_event_destroy (&e);
    return d;
}

json_t *
sb_console_event_notice (const sb_event_t *e)
{
    json_t *o = json_object ();
    if (!o)
        return NULL;
    json_object_set_new (o, "source", json_string ("ingress"));
    s_set_text (o, "id", e->id);
    json_object_set_new (o, "provider", json_string (sb_event_provider_name (e->provider)));
    json_object_set_new (o, "channel", json_string (sb_event_channel_name (e->channel)));
    json_object_set_new (o, "kind", json_string (sb_event_kind_name (e->kind)));
    s_set_text (o, "type", e->message_type);
    s_set_text (o, "provider_id", e->provider_id);
    s_set_text (o, "from", e->from);
    s_set_text (o, "to", e->to);
    s_set_text (o, "profile_name", e->profile_name);
    s_set_text (o, "text", e->text);
    if (e->status) {
        s_set_text (o, "status", e->status->status);
        s_set_text (o, "error_code", e->status->error_code);
    }
    json_object_set_new (o, "at_ms", json_integer (e->received_at_ms));
    json_t *d = sb_console_event_details (e);
    if (d)
        json_object_set_new (o, "details", d);
    return o;
}

char *
sb_console_sse_frame (const char *id, const char *name, const char *data)
{
    if (!data || strpbrk (data, "\r\n") || (id && strpbrk (id, "\r\n"))
        || (name && strpbrk (name, "\r\n")))
        return NULL;
    size_t size = strlen (data) + (id ? strlen (id) : 0) + (name ? strlen (name) : 0) + 32;
    char *frame = malloc (size);
    if (!frame)
        return NULL;
    int n =
        snprintf (frame, size, "%s%s%s%s%s%sdata: %s\n\n", id ? "id: " : "", id ? id : "",
                  id ? "\n" : "", name ? "event: " : "", name ? name : "", name ? "\n" : "", data);
    if (n < 0 || (size_t) n >= size) {
        free (frame);
        return NULL;
    }
    return frame;
}
