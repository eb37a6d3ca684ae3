/*  sb_rules: the reply rules, read from a YAML file with libyaml's event API
    and matched against inbound events. The first rule that matches decides.

    The file format is documented in examples/rules.yaml (the reference);
    in short:

        opt_out: [STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT]  # optional
        opt_in: [START, UNSTOP, YES]                              # optional
        rules:                                                    # required
          - name: menu                       # required, unique, [A-Za-z0-9._-]
            match:                           # optional: absent = every message
              provider: any | twilio | meta            (or a list; default any)
              channel: any | sms | whatsapp | voice | rcs    (or a list; default any)
              kind: any | message | status | call | gather | echo |
                    preference | template | account | other (or a list;
                                                         default message)
              text: { keyword: menu }    # one of exact, keyword, prefix,
                                         # regex, any; plus ignore_case
            reply: "Template with {text}"  # or forward: {url, timeout_ms}
                                           # or none: true (exactly one)
            publish: false                 # optional

    The text a rule looks at is the event's text, except for gather events,
    where it is the digits, or the speech result when there are no digits,
    and Meta's other webhook fields: a template's or account's event
    (REJECTED, ...), a preference's value (stop, resume), a call's stage
    (connect, COMPLETED, RINGING, ...). Echoes are never asked about (the
    store does not: they are ours); templates, accounts, preferences,
    Meta calls and other fields may only forward or publish (nobody to
    reply to).
    exact (string or list): the whole text, byte for byte. keyword (string or
    list): the text with ASCII white space trimmed at both ends equals the
    keyword ignoring ASCII case; the whole message, not a word inside it, as
    with carriers' STOP handling. prefix (string or list): the text starts
    with it. regex: POSIX extended (regcomp), searched anywhere in the text,
    so anchor it with ^ and $. any: true matches every text, empty included.
    ignore_case: true makes exact, prefix and regex ignore case (ASCII for
    exact and prefix; REG_ICASE for regex); keyword always ignores case.

    Templates: {profile_name}, {text}, {from}, {to}, {digits} render the
    event's fields (a missing field renders as nothing); {{ and }} are a
    literal brace; any other {...} or a lone } is a load error. A rendered
    reply is cut at SB_RULES_REPLY_MAX bytes (WhatsApp's limit for a text
    body) on a UTF-8 character boundary; a reply that renders empty or all
    white space is not sent (the decision is NONE, naming the rule).

    Strictness: a bad file stops the start, so every mistake we can see is
    an error with the file's line: YAML syntax, unknown or repeated keys,
    wrong types (values are read by what the key expects, so `YES` in a
    keyword list is the string YES, not a YAML 1.1 boolean; booleans and
    numbers must be unquoted), no action or two, a bad regex (regerror's
    text), a URL that is not http(s), an unknown placeholder, duplicate rule
    names, an empty file. `rules: []` is allowed and means never reply.

    Hostile input: the file is read whole with a SB_RULES_FILE_MAX cap
    (which also bounds libyaml's nesting stacks, and rules, and memory);
    anchors and aliases are refused outright, so there is no alias expansion
    to bomb; tags are ignored. The loader never descends into a structure
    the schema does not expect: the first unexpected event is an error.
    Limits: regexes are capped at SB_RULES_REGEX_MAX bytes, but glibc's
    regcomp can still take large memory on nested bounded repetitions
    ((a{1,99}){1,99}); the rules file is trusted operator configuration.

    A loaded sb_rules_t is immutable: sb_rules_decide and the opt-out checks
    may be called from several threads at once (regexec on a shared regex_t
    is safe).
*/
#include "sb_rules.h"

#include <curl/curl.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "sb_log.h"

#define SB_RULES_FILE_MAX (1024 * 1024)  //  bytes in a rules file
#define SB_RULES_REPLY_MAX 4096          //  bytes in a rendered reply, and in a template
#define SB_RULES_CAPTURE_MAX 256         //  bytes of a publish rule's capture
#define SB_RULES_NAME_MAX 64             //  bytes in a rule name
#define SB_RULES_URL_MAX 2048            //  bytes in a forward URL
#define SB_RULES_REGEX_MAX 1024          //  bytes in a regex
#define SB_RULES_WORD_MAX 256            //  bytes in a keyword, exact or prefix string
#define SB_RULES_TIMEOUT_MIN 100         //  forward timeout_ms bounds and default
#define SB_RULES_TIMEOUT_MAX 30000
#define SB_RULES_TIMEOUT_DEFAULT 5000

#define S_ANY_MASK 0xFFFFFFFFu  //  provider/channel/kind mask matching every value

//  How a rule looks at the text.
typedef enum {
    S_TEXT_ANY = 0,  //  no condition (also `any: true`)
    S_TEXT_EXACT,    //  whole text equal to one of the strings
    S_TEXT_KEYWORD,  //  trimmed text equal to one of the strings, ignoring case
    S_TEXT_PREFIX,   //  text starts with one of the strings
    S_TEXT_REGEX,    //  POSIX extended regex found in the text
} s_text_how_t;

//  Template placeholders; S_FIELD_LITERAL marks literal text.
typedef enum {
    S_FIELD_LITERAL = -1,
    S_FIELD_PROFILE_NAME = 0,
    S_FIELD_TEXT,
    S_FIELD_FROM,
    S_FIELD_TO,
    S_FIELD_DIGITS,
    S_FIELD_COUNT
} s_field_t;

static const char *s_field_names[S_FIELD_COUNT] = {"profile_name", "text", "from", "to", "digits"};

//  One piece of a parsed template.
typedef struct {
    s_field_t field;  //  the placeholder, or S_FIELD_LITERAL
    char *literal;    //  the literal text (S_FIELD_LITERAL only), owned
    size_t size;      //  its length in bytes
} s_part_t;

//  A list of strings.
typedef struct {
    char **items;   //  owned strings
    size_t *lines;  //  line of each string in the file (0 for defaults)
    size_t count;   //  strings in use
} s_words_t;

//  One rule, as loaded.
typedef struct {
    char *name;               //  unique name, owned
    size_t line;              //  line of the rule in the file (1-based)
    uint32_t providers;       //  bit (1 << provider) per matching provider
    uint32_t channels;        //  bit (1 << channel) per matching channel
    uint32_t kinds;           //  bit (1 << kind) per matching kind
    s_text_how_t how;         //  text condition
    s_words_t words;          //  EXACT/KEYWORD/PREFIX strings (keywords trimmed)
    bool ignore_case;         //  EXACT/PREFIX/REGEX ignore case
    char *regex_src;          //  REGEX: the pattern, owned (until compiled)
    size_t regex_line;        //  REGEX: the pattern's line, for errors
    regex_t regex;            //  REGEX: compiled pattern
    bool regex_ok;            //  regex is compiled and must be regfree'd
    sb_rule_action_t action;  //  what to do; SB_RULE_NONE with has_action for none
    bool has_action;          //  an action key was given
    s_part_t *parts;          //  REPLY: parsed template, owned
    size_t part_count;        //  REPLY: parts in use
    char *url;                //  FORWARD: bot URL, owned
    int timeout_ms;           //  FORWARD: timeout
    bool publish;             //  publish the match
} s_rule_t;

struct sb_rules_t {
    s_rule_t *rules;    //  rules in file order, owned
    size_t count;       //  rules in use
    size_t capacity;    //  rules allocated
    s_words_t opt_out;  //  opt-out keywords, trimmed
    s_words_t opt_in;   //  opt-in keywords, trimmed
};

//  The loader: the libyaml parser and its current event.
typedef struct {
    yaml_parser_t parser;       //  libyaml parser over data
    bool parser_ok;             //  parser was initialized
    yaml_event_t event;         //  the current event
    bool have_event;            //  event must be deleted
    const char *name;           //  file name for messages
    const unsigned char *data;  //  the whole file
    size_t size;                //  its size
    char *err;                  //  caller's error buffer (may be NULL)
    size_t err_size;            //  its size
    bool failed;                //  an error was recorded
} s_loader_t;

static const char *s_default_opt_out[] = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL",
                                          "END",  "QUIT",    NULL};
static const char *s_default_opt_in[] = {"START", "UNSTOP", "YES", NULL};


//  --------------------------------------------------------------------------
//  Small string helpers (ASCII only, locale independent)

static int
s_lower (int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static bool
s_is_space (int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

//  Trim ASCII white space; returns the start, sets *size.
static const char *
s_trim (const char *text, size_t *size)
{
    size_t len = strlen (text);
    while (len > 0 && s_is_space ((unsigned char) *text)) {
        text++;
        len--;
    }
    while (len > 0 && s_is_space ((unsigned char) text[len - 1]))
        len--;
    *size = len;
    return text;
}

static bool
s_equal_nocase (const char *a, const char *b, size_t size)
{
    for (size_t i = 0; i < size; i++)
        if (s_lower ((unsigned char) a[i]) != s_lower ((unsigned char) b[i]))
            return false;
    return true;
}

static char *
s_strndup (const char *text, size_t size)
{
    char *copy = (char *) malloc (size + 1);
    if (copy) {
        memcpy (copy, text, size);
        copy[size] = '\0';
    }
    return copy;
}

static void
s_words_clear (s_words_t *words)
{
    for (size_t i = 0; i < words->count; i++)
        free (words->items[i]);
    free (words->items);
    free (words->lines);
    words->items = NULL;
    words->lines = NULL;
    words->count = 0;
}

//  Append a copy of text, from line. 0 or -1 when out of memory.
static int
s_words_add (s_words_t *words, const char *text, size_t size, size_t line)
{
    char **items = (char **) realloc (words->items, (words->count + 1) * sizeof (char *));
    if (!items)
        return -1;
    words->items = items;
    size_t *lines = (size_t *) realloc (words->lines, (words->count + 1) * sizeof (size_t));
    if (!lines)
        return -1;
    words->lines = lines;
    words->lines[words->count] = line;
    char *copy = s_strndup (text, size);
    if (!copy)
        return -1;
    words->items[words->count++] = copy;
    return 0;
}

//  The index of the word the trimmed text equals ignoring case, or -1.
static int
s_words_find_keyword (const s_words_t *words, const char *text)
{
    size_t size;
    const char *start = s_trim (text, &size);
    for (size_t i = 0; i < words->count; i++)
        if (strlen (words->items[i]) == size && s_equal_nocase (start, words->items[i], size))
            return (int) i;
    return -1;
}

static bool
s_words_match_keyword (const s_words_t *words, const char *text)
{
    return s_words_find_keyword (words, text) >= 0;
}


//  --------------------------------------------------------------------------
//  Rules object

static void
s_rule_clear (s_rule_t *rule)
{
    free (rule->name);
    s_words_clear (&rule->words);
    free (rule->regex_src);
    if (rule->regex_ok)
        regfree (&rule->regex);
    for (size_t i = 0; i < rule->part_count; i++)
        free (rule->parts[i].literal);
    free (rule->parts);
    free (rule->url);
    memset (rule, 0, sizeof (*rule));
}

void
sb_rules_destroy (sb_rules_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_rules_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        s_rule_clear (&self->rules[i]);
    free (self->rules);
    s_words_clear (&self->opt_out);
    s_words_clear (&self->opt_in);
    free (self);
    *self_p = NULL;
}

size_t
sb_rules_count (const sb_rules_t *self)
{
    return self ? self->count : 0;
}


//  --------------------------------------------------------------------------
//  Loader: errors and events

//  Record "name:line: problem" (the first error only). line 0 omits it.
static void s_fail (s_loader_t *loader, size_t line, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_fail (s_loader_t *loader, size_t line, const char *fmt, ...)
{
    if (loader->failed)
        return;
    loader->failed = true;
    if (!loader->err || loader->err_size == 0)
        return;
    int n;
    if (line > 0)
        n = snprintf (loader->err, loader->err_size, "%s:%zu: ", loader->name, line);
    else
        n = snprintf (loader->err, loader->err_size, "%s: ", loader->name);
    if (n < 0 || (size_t) n >= loader->err_size)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (loader->err + n, loader->err_size - (size_t) n, fmt, args);
    va_end (args);
}

//  Line (1-based) of the current event.
static size_t
s_line (const s_loader_t *loader)
{
    return loader->event.start_mark.line + 1;
}

//  Line (1-based) of a byte offset in the data.
static size_t
s_line_of_offset (const s_loader_t *loader, size_t offset)
{
    size_t line = 1;
    for (size_t i = 0; i < offset && i < loader->size; i++)
        if (loader->data[i] == '\n')
            line++;
    return line;
}

//  Report libyaml's error.
static void
s_fail_yaml (s_loader_t *loader)
{
    yaml_parser_t *parser = &loader->parser;
    const char *problem = parser->problem ? parser->problem : "unknown error";
    switch (parser->error) {
        case YAML_MEMORY_ERROR: s_fail (loader, 0, "out of memory"); break;
        case YAML_READER_ERROR:
            //  Bad encoding or control characters: libyaml gives a byte offset
            if (parser->problem_value != -1)
                s_fail (loader, s_line_of_offset (loader, parser->problem_offset),
                        "YAML syntax error: %s (byte 0x%02X)", problem,
                        (unsigned) parser->problem_value & 0xFFu);
            else
                s_fail (loader, s_line_of_offset (loader, parser->problem_offset),
                        "YAML syntax error: %s", problem);
            break;
        case YAML_SCANNER_ERROR:
            //  The context is the token being scanned (a quoted string, a
            //  key): its start is the line to fix, the problem often the
            //  end of the file
            if (parser->context)
                s_fail (loader, parser->context_mark.line + 1, "YAML syntax error: %s (%s)",
                        problem, parser->context);
            else
                s_fail (loader, parser->problem_mark.line + 1, "YAML syntax error: %s", problem);
            break;
        default:
            //  Parser errors: the problem is the line to fix, the context
            //  (a mapping, a sequence) may have started far above
            if (parser->context)
                s_fail (loader, parser->problem_mark.line + 1,
                        "YAML syntax error: %s (%s at line %zu)", problem, parser->context,
                        parser->context_mark.line + 1);
            else
                s_fail (loader, parser->problem_mark.line + 1, "YAML syntax error: %s", problem);
            break;
    }
}

//  Move to the next event. Refuses aliases and anchors. 0 or -1.
static int
s_next (s_loader_t *loader)
{
    if (loader->have_event) {
        yaml_event_delete (&loader->event);
        loader->have_event = false;
    }
    if (!yaml_parser_parse (&loader->parser, &loader->event)) {
        s_fail_yaml (loader);
        return -1;
    }
    loader->have_event = true;
    const yaml_char_t *anchor = NULL;
    switch (loader->event.type) {
        case YAML_ALIAS_EVENT: anchor = loader->event.data.alias.anchor; break;
        case YAML_SCALAR_EVENT: anchor = loader->event.data.scalar.anchor; break;
        case YAML_SEQUENCE_START_EVENT: anchor = loader->event.data.sequence_start.anchor; break;
        case YAML_MAPPING_START_EVENT: anchor = loader->event.data.mapping_start.anchor; break;
        default: break;
    }
    if (anchor) {
        s_fail (loader, s_line (loader),
                "YAML anchors (&) and aliases (*) are not supported; write the value out");
        return -1;
    }
    return 0;
}

//  What the current event is, for "expected X, got Y" messages.
static const char *
s_event_what (const s_loader_t *loader)
{
    switch (loader->event.type) {
        case YAML_SCALAR_EVENT: return "a scalar";
        case YAML_SEQUENCE_START_EVENT: return "a list";
        case YAML_MAPPING_START_EVENT: return "a mapping";
        default: return "the end of the document";
    }
}

//  The current event is a plain null scalar: ~, null, or nothing.
static bool
s_is_null (const s_loader_t *loader)
{
    if (loader->event.type != YAML_SCALAR_EVENT
        || loader->event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *value = (const char *) loader->event.data.scalar.value;
    return strcmp (value, "") == 0 || strcmp (value, "~") == 0 || strcmp (value, "null") == 0
           || strcmp (value, "Null") == 0 || strcmp (value, "NULL") == 0;
}

//  Read the next key of a mapping whose start was consumed. Returns the key's
//  index in keys (NULL-terminated), -2 at the end of the mapping, or -1 on
//  error: not a scalar, unknown (where is "in a rule", ...), or repeated
//  (seen holds a bit per key already read).
static int
s_next_key (s_loader_t *loader, const char *const *keys, const char *where, uint32_t *seen)
{
    if (s_next (loader))
        return -1;
    if (loader->event.type == YAML_MAPPING_END_EVENT)
        return -2;
    if (loader->event.type != YAML_SCALAR_EVENT) {
        s_fail (loader, s_line (loader), "expected a key %s, got %s", where, s_event_what (loader));
        return -1;
    }
    const char *key = (const char *) loader->event.data.scalar.value;
    for (int i = 0; keys[i]; i++)
        if (strcmp (key, keys[i]) == 0) {
            if (*seen & (1u << i)) {
                s_fail (loader, s_line (loader), "'%s' given twice %s", key, where);
                return -1;
            }
            *seen |= 1u << i;
            return i;
        }
    char known[256] = "";
    size_t used = 0;
    for (int i = 0; keys[i]; i++) {
        int n = snprintf (known + used, sizeof (known) - used, "%s%s", i ? ", " : "", keys[i]);
        if (n < 0 || (size_t) n >= sizeof (known) - used)
            break;
        used += (size_t) n;
    }
    s_fail (loader, s_line (loader), "unknown key '%.64s' %s (expected one of: %s)", key, where,
            known);
    return -1;
}

//  Expect the next event to start a mapping.
static int
s_expect_mapping (s_loader_t *loader, const char *what)
{
    if (s_next (loader))
        return -1;
    if (loader->event.type != YAML_MAPPING_START_EVENT) {
        s_fail (loader, s_line (loader), "%s: expected a mapping, got %s", what,
                s_is_null (loader) ? "nothing" : s_event_what (loader));
        return -1;
    }
    return 0;
}

//  Check the current scalar event is a usable string (not null, no NUL
//  byte, at most max bytes). Returns it (borrowed from the event) or NULL.
static const char *
s_current_string (s_loader_t *loader, const char *what, size_t max)
{
    if (loader->event.type != YAML_SCALAR_EVENT || s_is_null (loader)) {
        s_fail (loader, s_line (loader), "%s: expected a string, got %s", what,
                s_is_null (loader) ? "nothing" : s_event_what (loader));
        return NULL;
    }
    const char *value = (const char *) loader->event.data.scalar.value;
    size_t size = loader->event.data.scalar.length;
    if (strlen (value) != size) {
        s_fail (loader, s_line (loader), "%s: contains a NUL character", what);
        return NULL;
    }
    if (size > max) {
        s_fail (loader, s_line (loader), "%s: longer than %zu bytes", what, max);
        return NULL;
    }
    return value;
}

//  Read a string value. Caller owns *out.
static int
s_read_string (s_loader_t *loader, const char *what, size_t max, char **out)
{
    if (s_next (loader))
        return -1;
    const char *value = s_current_string (loader, what, max);
    if (!value)
        return -1;
    *out = strdup (value);
    if (!*out) {
        s_fail (loader, 0, "out of memory");
        return -1;
    }
    return 0;
}

//  Read an unquoted true or false.
static int
s_read_bool (s_loader_t *loader, const char *what, bool *out)
{
    if (s_next (loader))
        return -1;
    if (loader->event.type == YAML_SCALAR_EVENT
        && loader->event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        const char *value = (const char *) loader->event.data.scalar.value;
        if (!strcmp (value, "true") || !strcmp (value, "True") || !strcmp (value, "TRUE")) {
            *out = true;
            return 0;
        }
        if (!strcmp (value, "false") || !strcmp (value, "False") || !strcmp (value, "FALSE")) {
            *out = false;
            return 0;
        }
    }
    s_fail (loader, s_line (loader), "%s: expected true or false (unquoted)", what);
    return -1;
}

//  Read an unquoted whole number in [min, max].
static int
s_read_int (s_loader_t *loader, const char *what, int min, int max, int *out)
{
    if (s_next (loader))
        return -1;
    if (loader->event.type == YAML_SCALAR_EVENT
        && loader->event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        const char *value = (const char *) loader->event.data.scalar.value;
        size_t size = loader->event.data.scalar.length;
        long number = 0;
        bool ok = size > 0 && size <= 9;
        for (size_t i = 0; ok && i < size; i++) {
            if (value[i] < '0' || value[i] > '9')
                ok = false;
            else
                number = number * 10 + (value[i] - '0');
        }
        if (ok && number >= min && number <= max) {
            *out = (int) number;
            return 0;
        }
    }
    s_fail (loader, s_line (loader), "%s: expected a whole number from %d to %d (unquoted)", what,
            min, max);
    return -1;
}

//  Read one string or a list of strings into words (appending). With trim,
//  each is trimmed and must not be empty; with allow_empty false, a string
//  must not be empty either way. An empty list is an error unless
//  allow_empty_list.
static int
s_read_words (s_loader_t *loader, const char *what, bool trim, bool allow_empty,
              bool allow_empty_list, s_words_t *words)
{
    if (s_next (loader))
        return -1;
    bool list = loader->event.type == YAML_SEQUENCE_START_EVENT;
    size_t list_line = s_line (loader);
    size_t added = 0;
    while (true) {
        if (list) {
            if (s_next (loader))
                return -1;
            if (loader->event.type == YAML_SEQUENCE_END_EVENT)
                break;
        }
        const char *value = s_current_string (loader, what, SB_RULES_WORD_MAX);
        if (!value)
            return -1;
        size_t size = strlen (value);
        if (trim)
            value = s_trim (value, &size);
        if (size == 0 && !allow_empty) {
            s_fail (loader, s_line (loader), "%s: empty string", what);
            return -1;
        }
        if (s_words_add (words, value, size, s_line (loader))) {
            s_fail (loader, 0, "out of memory");
            return -1;
        }
        added++;
        if (!list)
            break;
    }
    if (added == 0 && !allow_empty_list) {
        s_fail (loader, list_line, "%s: empty list", what);
        return -1;
    }
    return 0;
}

//  A name table for provider, channel and kind.
typedef struct {
    const char *name;  //  lower-case name
    int value;         //  enum value
} s_name_t;

static const s_name_t s_provider_names[] = {
    {"twilio", SB_PROVIDER_TWILIO}, {"meta", SB_PROVIDER_META}, {NULL, 0}};
static const s_name_t s_channel_names[] = {{"sms", SB_CHANNEL_SMS},
                                           {"whatsapp", SB_CHANNEL_WHATSAPP},
                                           {"voice", SB_CHANNEL_VOICE},
                                           {"rcs", SB_CHANNEL_RCS},
                                           {NULL, 0}};
static const s_name_t s_kind_names[] = {
    {"message", SB_KIND_MESSAGE},   {"status", SB_KIND_STATUS},
    {"call", SB_KIND_CALL},         {"gather", SB_KIND_GATHER},
    {"echo", SB_KIND_ECHO},         {"preference", SB_KIND_PREFERENCE},
    {"template", SB_KIND_TEMPLATE}, {"account", SB_KIND_ACCOUNT},
    {"other", SB_KIND_OTHER},       {NULL, 0}};

//  Read a name, or a list of names, from table (or "any") into a mask.
static int
s_read_names (s_loader_t *loader, const char *what, const s_name_t *table, uint32_t *mask)
{
    s_words_t words = {NULL, NULL, 0};
    if (s_read_words (loader, what, true, false, false, &words))
        goto failed;
    *mask = 0;
    for (size_t i = 0; i < words.count; i++) {
        const char *word = words.items[i];
        size_t size = strlen (word);
        if (size == 3 && s_equal_nocase (word, "any", 3)) {
            *mask = S_ANY_MASK;
            continue;
        }
        bool found = false;
        for (int t = 0; table[t].name; t++)
            if (strlen (table[t].name) == size && s_equal_nocase (word, table[t].name, size)) {
                *mask |= 1u << table[t].value;
                found = true;
            }
        if (!found) {
            char known[128] = "any";
            size_t used = 3;
            for (int t = 0; table[t].name; t++) {
                int n = snprintf (known + used, sizeof (known) - used, ", %s", table[t].name);
                if (n < 0 || (size_t) n >= sizeof (known) - used)
                    break;
                used += (size_t) n;
            }
            s_fail (loader, words.lines[i], "%s: unknown value '%.64s' (expected one of: %s)", what,
                    word, known);
            goto failed;
        }
    }
    s_words_clear (&words);
    return 0;
failed:
    s_words_clear (&words);
    return -1;
}


//  --------------------------------------------------------------------------
//  Loader: templates

//  Append a part to the rule's template.
static int
s_add_part (s_rule_t *rule, s_field_t field, const char *literal, size_t size)
{
    s_part_t *parts =
        (s_part_t *) realloc (rule->parts, (rule->part_count + 1) * sizeof (s_part_t));
    if (!parts)
        return -1;
    rule->parts = parts;
    s_part_t *part = &rule->parts[rule->part_count];
    part->field = field;
    part->literal = NULL;
    part->size = 0;
    if (field == S_FIELD_LITERAL) {
        part->literal = s_strndup (literal, size);
        if (!part->literal)
            return -1;
        part->size = size;
    }
    rule->part_count++;
    return 0;
}

//  Parse a reply template into parts. line is the template's line.
static int
s_parse_template (s_loader_t *loader, s_rule_t *rule, const char *src, size_t line)
{
    size_t size;
    s_trim (src, &size);
    if (size == 0) {
        s_fail (loader, line, "reply: empty template (write none: true to send nothing)");
        return -1;
    }
    //  Literal text collects in buf (never longer than src) between placeholders
    size_t src_size = strlen (src);
    char *buf = (char *) malloc (src_size + 1);
    if (!buf) {
        s_fail (loader, 0, "out of memory");
        return -1;
    }
    size_t used = 0;
    const char *p = src;
    while (*p) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            buf[used++] = p[0];
            p += 2;
        }
        else if (p[0] == '}') {
            s_fail (loader, line, "reply: lone '}' in template (write }} for a literal })");
            goto failed;
        }
        else if (p[0] == '{') {
            const char *close = strchr (p + 1, '}');
            if (!close) {
                s_fail (loader, line, "reply: unclosed '{' in template (write {{ for a literal {)");
                goto failed;
            }
            size_t name_size = (size_t) (close - p - 1);
            int field = -1;
            for (int f = 0; f < S_FIELD_COUNT; f++)
                if (strlen (s_field_names[f]) == name_size
                    && memcmp (s_field_names[f], p + 1, name_size) == 0)
                    field = f;
            if (field < 0) {
                s_fail (loader, line,
                        "reply: unknown placeholder {%.*s} (known: {profile_name}, {text}, "
                        "{from}, {to}, {digits}; write {{ for a literal {)",
                        (int) (name_size > 64 ? 64 : name_size), p + 1);
                goto failed;
            }
            if ((used > 0 && s_add_part (rule, S_FIELD_LITERAL, buf, used))
                || s_add_part (rule, (s_field_t) field, NULL, 0)) {
                s_fail (loader, 0, "out of memory");
                goto failed;
            }
            used = 0;
            p = close + 1;
        }
        else
            buf[used++] = *p++;
    }
    if (used > 0 && s_add_part (rule, S_FIELD_LITERAL, buf, used)) {
        s_fail (loader, 0, "out of memory");
        goto failed;
    }
    free (buf);
    return 0;
failed:
    free (buf);
    return -1;
}


//  --------------------------------------------------------------------------
//  Loader: the schema

//  text: { exact | keyword | prefix | regex | any, ignore_case }
static int
s_parse_text (s_loader_t *loader, s_rule_t *rule)
{
    static const char *const keys[] = {"exact", "keyword",     "prefix", "regex",
                                       "any",   "ignore_case", NULL};
    if (s_expect_mapping (loader, "text"))
        return -1;
    size_t line = s_line (loader);
    uint32_t seen = 0;
    bool has_how = false;
    bool has_ignore_case = false;
    int key;
    while ((key = s_next_key (loader, keys, "in text", &seen)) >= 0) {
        if (key <= 4) {
            if (has_how) {
                s_fail (loader, s_line (loader),
                        "text: give only one of exact, keyword, prefix, regex, any");
                return -1;
            }
            has_how = true;
        }
        const char *name = keys[key];
        switch (key) {
            case 0:
                rule->how = S_TEXT_EXACT;
                if (s_read_words (loader, name, false, true, false, &rule->words))
                    return -1;
                break;
            case 1:
                rule->how = S_TEXT_KEYWORD;
                if (s_read_words (loader, name, true, false, false, &rule->words))
                    return -1;
                break;
            case 2:
                rule->how = S_TEXT_PREFIX;
                if (s_read_words (loader, name, false, false, false, &rule->words))
                    return -1;
                break;
            case 3:
                rule->how = S_TEXT_REGEX;
                if (s_read_string (loader, name, SB_RULES_REGEX_MAX, &rule->regex_src))
                    return -1;
                rule->regex_line = s_line (loader);
                if (rule->regex_src[0] == '\0') {
                    s_fail (loader, rule->regex_line, "regex: empty pattern (use any: true)");
                    return -1;
                }
                break;
            case 4: {
                bool any = false;
                if (s_read_bool (loader, name, &any))
                    return -1;
                if (!any) {
                    s_fail (loader, s_line (loader), "any: only 'any: true' makes sense");
                    return -1;
                }
                rule->how = S_TEXT_ANY;
                break;
            }
            default:
                if (s_read_bool (loader, name, &rule->ignore_case))
                    return -1;
                has_ignore_case = true;
                break;
        }
    }
    if (key == -1)
        return -1;
    if (!has_how) {
        s_fail (loader, line, "text: give one of exact, keyword, prefix, regex, any");
        return -1;
    }
    if (has_ignore_case && (rule->how == S_TEXT_KEYWORD || rule->how == S_TEXT_ANY)) {
        s_fail (loader, line,
                "text: ignore_case applies to exact, prefix and regex only "
                "(keyword always ignores case)");
        return -1;
    }
    if (rule->how == S_TEXT_REGEX) {
        //  Without REG_NOSUB: a publish rule asks where the match is
        //  (s_capture); matching alone passes no pmatch and costs the same.
        int flags = REG_EXTENDED | (rule->ignore_case ? REG_ICASE : 0);
        int rc = regcomp (&rule->regex, rule->regex_src, flags);
        if (rc != 0) {
            char problem[128];
            regerror (rc, &rule->regex, problem, sizeof (problem));
            s_fail (loader, rule->regex_line, "regex '%.64s': %s", rule->regex_src, problem);
            return -1;
        }
        rule->regex_ok = true;
    }
    return 0;
}

//  match: { provider, channel, kind, text }
static int
s_parse_match (s_loader_t *loader, s_rule_t *rule)
{
    static const char *const keys[] = {"provider", "channel", "kind", "text", NULL};
    if (s_expect_mapping (loader, "match"))
        return -1;
    uint32_t seen = 0;
    int key;
    while ((key = s_next_key (loader, keys, "in match", &seen)) >= 0) {
        int rc;
        if (key == 0)
            rc = s_read_names (loader, "provider", s_provider_names, &rule->providers);
        else if (key == 1)
            rc = s_read_names (loader, "channel", s_channel_names, &rule->channels);
        else if (key == 2)
            rc = s_read_names (loader, "kind", s_kind_names, &rule->kinds);
        else
            rc = s_parse_text (loader, rule);
        if (rc)
            return -1;
    }
    return key == -1 ? -1 : 0;
}

//  A URL libcurl parses, http or https, with a host.
static bool
s_url_ok (const char *url)
{
    for (const char *p = url; *p; p++)
        if ((unsigned char) *p <= ' ' || *p == 0x7F)
            return false;
    CURLU *handle = curl_url ();
    if (!handle)
        return false;
    bool ok = false;
    char *scheme = NULL;
    char *host = NULL;
    if (curl_url_set (handle, CURLUPART_URL, url, 0) == CURLUE_OK
        && curl_url_get (handle, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
        && curl_url_get (handle, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        ok = (strcmp (scheme, "http") == 0 || strcmp (scheme, "https") == 0) && host[0];
    curl_free (scheme);
    curl_free (host);
    curl_url_cleanup (handle);
    return ok;
}

//  forward: { url, timeout_ms }
static int
s_parse_forward (s_loader_t *loader, s_rule_t *rule)
{
    static const char *const keys[] = {"url", "timeout_ms", NULL};
    if (s_expect_mapping (loader, "forward"))
        return -1;
    size_t line = s_line (loader);
    uint32_t seen = 0;
    int key;
    rule->timeout_ms = SB_RULES_TIMEOUT_DEFAULT;
    while ((key = s_next_key (loader, keys, "in forward", &seen)) >= 0) {
        if (key == 0) {
            if (s_read_string (loader, "url", SB_RULES_URL_MAX, &rule->url))
                return -1;
            if (!s_url_ok (rule->url)) {
                s_fail (loader, s_line (loader),
                        "url '%.128s': expected an http:// or https:// URL with a host", rule->url);
                return -1;
            }
        }
        else if (s_read_int (loader, "timeout_ms", SB_RULES_TIMEOUT_MIN, SB_RULES_TIMEOUT_MAX,
                             &rule->timeout_ms))
            return -1;
    }
    if (key == -1)
        return -1;
    if (!rule->url) {
        s_fail (loader, line, "forward: 'url' is required");
        return -1;
    }
    return 0;
}

//  A rule name: 1 to SB_RULES_NAME_MAX of [A-Za-z0-9._-].
static bool
s_name_ok (const char *name)
{
    size_t size = strlen (name);
    if (size == 0 || size > SB_RULES_NAME_MAX)
        return false;
    for (size_t i = 0; i < size; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
              || c == '_' || c == '-'))
            return false;
    }
    return true;
}

//  One rule, into self->rules [self->count] (counted once complete).
static int
s_parse_rule (s_loader_t *loader, sb_rules_t *self, s_rule_t *rule)
{
    static const char *const keys[] = {"name", "match",   "reply", "forward",
                                       "none", "publish", NULL};
    rule->line = s_line (loader);
    rule->providers = S_ANY_MASK;
    rule->channels = S_ANY_MASK;
    rule->kinds = 1u << SB_KIND_MESSAGE;
    rule->how = S_TEXT_ANY;
    uint32_t seen = 0;
    int key;
    while ((key = s_next_key (loader, keys, "in a rule", &seen)) >= 0) {
        if (key >= 2 && key <= 4) {
            if (rule->has_action) {
                s_fail (loader, s_line (loader), "a rule takes only one of reply, forward, none");
                return -1;
            }
            rule->has_action = true;
        }
        switch (key) {
            case 0: {
                if (s_next (loader))
                    return -1;
                const char *name = s_current_string (loader, "name", 256);
                if (!name)
                    return -1;
                if (!s_name_ok (name)) {
                    s_fail (loader, s_line (loader),
                            "name '%.64s': use 1 to %d letters, digits, '.', '_' or '-'", name,
                            SB_RULES_NAME_MAX);
                    return -1;
                }
                for (size_t i = 0; i < self->count; i++)
                    if (strcmp (self->rules[i].name, name) == 0) {
                        s_fail (loader, s_line (loader),
                                "duplicate rule name '%s' (first at line %zu)", name,
                                self->rules[i].line);
                        return -1;
                    }
                rule->name = strdup (name);
                if (!rule->name) {
                    s_fail (loader, 0, "out of memory");
                    return -1;
                }
                break;
            }
            case 1:
                if (s_parse_match (loader, rule))
                    return -1;
                break;
            case 2: {
                rule->action = SB_RULE_REPLY;
                if (s_next (loader))
                    return -1;
                const char *src = s_current_string (loader, "reply", SB_RULES_REPLY_MAX);
                if (!src || s_parse_template (loader, rule, src, s_line (loader)))
                    return -1;
                break;
            }
            case 3:
                rule->action = SB_RULE_FORWARD;
                if (s_parse_forward (loader, rule))
                    return -1;
                break;
            case 4: {
                bool none = false;
                if (s_read_bool (loader, "none", &none))
                    return -1;
                if (!none) {
                    s_fail (loader, s_line (loader), "none: only 'none: true' makes sense");
                    return -1;
                }
                rule->action = SB_RULE_NONE;
                break;
            }
            default:
                if (s_read_bool (loader, "publish", &rule->publish))
                    return -1;
                break;
        }
    }
    if (key == -1)
        return -1;
    if (!rule->name) {
        s_fail (loader, rule->line, "rule %zu has no name", self->count + 1);
        return -1;
    }
    if (!rule->has_action) {
        s_fail (loader, rule->line, "rule '%s' has no action: give one of reply, forward, none",
                rule->name);
        return -1;
    }
    return 0;
}

//  rules: [ rule, ... ]
static int
s_parse_rules (s_loader_t *loader, sb_rules_t *self)
{
    if (s_next (loader))
        return -1;
    if (loader->event.type != YAML_SEQUENCE_START_EVENT) {
        s_fail (loader, s_line (loader), "rules: expected a list, got %s",
                s_is_null (loader) ? "nothing" : s_event_what (loader));
        return -1;
    }
    while (true) {
        if (s_next (loader))
            return -1;
        if (loader->event.type == YAML_SEQUENCE_END_EVENT)
            return 0;
        if (loader->event.type != YAML_MAPPING_START_EVENT) {
            s_fail (loader, s_line (loader), "rules: each rule is a mapping, got %s",
                    s_is_null (loader) ? "nothing" : s_event_what (loader));
            return -1;
        }
        if (self->count == self->capacity) {
            size_t capacity = self->capacity ? self->capacity * 2 : 8;
            s_rule_t *rules = (s_rule_t *) realloc (self->rules, capacity * sizeof (s_rule_t));
            if (!rules) {
                s_fail (loader, 0, "out of memory");
                return -1;
            }
            self->rules = rules;
            self->capacity = capacity;
        }
        s_rule_t *rule = &self->rules[self->count];
        memset (rule, 0, sizeof (*rule));
        if (s_parse_rule (loader, self, rule)) {
            s_rule_clear (rule);
            return -1;
        }
        self->count++;
    }
}

//  Fill a keyword list with defaults.
static int
s_set_defaults (s_words_t *words, const char **defaults)
{
    for (int i = 0; defaults[i]; i++)
        if (s_words_add (words, defaults[i], strlen (defaults[i]), 0))
            return -1;
    return 0;
}

//  The document's top-level mapping.
static int
s_parse_top (s_loader_t *loader, sb_rules_t *self)
{
    static const char *const keys[] = {"opt_out", "opt_in", "rules", NULL};
    if (s_next (loader))
        return -1;
    if (loader->event.type != YAML_MAPPING_START_EVENT) {
        s_fail (loader, s_line (loader),
                "expected a mapping with 'rules' (and optionally opt_out, opt_in), got %s",
                s_event_what (loader));
        return -1;
    }
    size_t line = s_line (loader);
    uint32_t seen = 0;
    int key;
    while ((key = s_next_key (loader, keys, "at the top level", &seen)) >= 0) {
        if (key == 0) {
            if (s_read_words (loader, "opt_out", true, false, true, &self->opt_out))
                return -1;
        }
        else if (key == 1) {
            if (s_read_words (loader, "opt_in", true, false, true, &self->opt_in))
                return -1;
        }
        else if (s_parse_rules (loader, self))
            return -1;
    }
    if (key == -1)
        return -1;
    if (!(seen & (1u << 2))) {
        s_fail (loader, line, "no 'rules' list (write rules: [] for none)");
        return -1;
    }
    if ((!(seen & (1u << 0)) && s_set_defaults (&self->opt_out, s_default_opt_out))
        || (!(seen & (1u << 1)) && s_set_defaults (&self->opt_in, s_default_opt_in))) {
        s_fail (loader, 0, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < self->opt_in.count; i++) {
        int j = s_words_find_keyword (&self->opt_out, self->opt_in.items[i]);
        if (j >= 0) {
            //  Blame the later of the two (a default has line 0)
            size_t at = self->opt_in.lines[i] > self->opt_out.lines[j] ? self->opt_in.lines[i]
                                                                       : self->opt_out.lines[j];
            s_fail (loader, at, "'%s' is both an opt-out and an opt-in keyword",
                    self->opt_in.items[i]);
            return -1;
        }
    }
    return 0;
}

//  The stream: exactly one document holding the top-level mapping.
static int
s_parse_stream (s_loader_t *loader, sb_rules_t *self)
{
    if (s_next (loader))
        return -1;
    if (loader->event.type != YAML_STREAM_START_EVENT) {
        s_fail (loader, 1, "not a YAML stream");
        return -1;
    }
    if (s_next (loader))
        return -1;
    if (loader->event.type != YAML_DOCUMENT_START_EVENT) {
        s_fail (loader, s_line (loader), "the file is empty: expected a mapping with 'rules'");
        return -1;
    }
    if (s_parse_top (loader, self))
        return -1;
    if (s_next (loader))
        return -1;
    //  The mapping's end is followed by the document's end
    if (loader->event.type != YAML_DOCUMENT_END_EVENT) {
        s_fail (loader, s_line (loader), "unexpected content after the top-level mapping");
        return -1;
    }
    if (s_next (loader))
        return -1;
    if (loader->event.type != YAML_STREAM_END_EVENT) {
        s_fail (loader, s_line (loader), "only one YAML document is allowed in a rules file");
        return -1;
    }
    return 0;
}

//  Load from bytes in memory.
static sb_rules_t *
s_load_buffer (const unsigned char *data, size_t size, const char *name, char *err, size_t err_size)
{
    s_loader_t loader;
    memset (&loader, 0, sizeof (loader));
    loader.name = name ? name : "<rules>";
    loader.data = data;
    loader.size = size;
    loader.err = err;
    loader.err_size = err_size;
    if (err && err_size > 0)
        err[0] = '\0';

    sb_rules_t *self = NULL;
    if (size > SB_RULES_FILE_MAX) {
        s_fail (&loader, 0, "larger than %d bytes", SB_RULES_FILE_MAX);
        goto failed;
    }
    self = (sb_rules_t *) calloc (1, sizeof (sb_rules_t));
    if (!self || !yaml_parser_initialize (&loader.parser)) {
        s_fail (&loader, 0, "out of memory");
        goto failed;
    }
    loader.parser_ok = true;
    yaml_parser_set_input_string (&loader.parser, data, size);
    if (s_parse_stream (&loader, self))
        goto failed;
    if (loader.have_event)
        yaml_event_delete (&loader.event);
    yaml_parser_delete (&loader.parser);
    return self;

failed:
    if (!loader.failed)
        s_fail (&loader, 0, "cannot load rules");
    if (loader.have_event)
        yaml_event_delete (&loader.event);
    if (loader.parser_ok)
        yaml_parser_delete (&loader.parser);
    sb_rules_destroy (&self);
    return NULL;
}

sb_rules_t *
sb_rules_load_string (const char *yaml, const char *name, char *err, size_t err_size)
{
    if (!yaml)
        yaml = "";
    return s_load_buffer ((const unsigned char *) yaml, strlen (yaml), name, err, err_size);
}

sb_rules_t *
sb_rules_load (const char *path, char *err, size_t err_size)
{
    if (err && err_size > 0)
        err[0] = '\0';
    if (!path) {
        if (err && err_size > 0)
            snprintf (err, err_size, "no rules file given");
        return NULL;
    }
    FILE *file = fopen (path, "rb");
    if (!file) {
        char reason[128];
        if (err && err_size > 0)
            snprintf (err, err_size, "%s: cannot open: %s", path,
                      sb_strerror (errno, reason, sizeof (reason)));
        return NULL;
    }
    //  Read at most one byte past the cap, so /dev/zero and huge files stop
    size_t capacity = 64 * 1024;
    size_t size = 0;
    unsigned char *data = (unsigned char *) malloc (capacity);
    int read_errno = 0;
    while (data) {
        if (size == capacity) {
            if (capacity > SB_RULES_FILE_MAX)
                break;
            capacity *= 2;
            unsigned char *bigger = (unsigned char *) realloc (data, capacity);
            if (!bigger) {
                free (data);
                data = NULL;
                break;
            }
            data = bigger;
        }
        size_t want = capacity - size;
        size_t got = fread (data + size, 1, want, file);
        size += got;
        if (got < want) {
            if (ferror (file))
                read_errno = errno ? errno : EIO;
            break;
        }
    }
    fclose (file);
    if (!data || read_errno) {
        char reason[128];
        if (err && err_size > 0)
            snprintf (err, err_size, "%s: cannot read: %s", path,
                      data ? sb_strerror (read_errno, reason, sizeof (reason)) : "out of memory");
        free (data);
        return NULL;
    }
    sb_rules_t *self = s_load_buffer (data, size, path, err, err_size);
    free (data);
    return self;
}


//  --------------------------------------------------------------------------
//  Deciding

//  The text rules look at: the digits (or speech) of a gather; the event
//  of a Meta template (REJECTED, ...) or account change, the value of a
//  preference (stop, resume), the stage of a Meta call; else the text.
static const char *
s_event_text (const sb_event_t *event)
{
    const char *what = NULL;
    if (event->kind == SB_KIND_TEMPLATE && event->meta_template)
        what = event->meta_template->event;
    else if (event->kind == SB_KIND_ACCOUNT && event->meta_account)
        what = event->meta_account->event;
    else if (event->kind == SB_KIND_PREFERENCE && event->preference)
        what = event->preference->value;
    else if (event->kind == SB_KIND_CALL && event->meta_call)
        what = event->call_status;
    if (what)
        return what;
    if (event->kind == SB_KIND_GATHER) {
        if (event->digits && event->digits[0])
            return event->digits;
        if (event->speech_result && event->speech_result[0])
            return event->speech_result;
    }
    return event->text ? event->text : "";
}

static bool
s_mask_has (uint32_t mask, int value)
{
    if (mask == S_ANY_MASK)
        return true;
    return value >= 0 && value < 32 && (mask & (1u << value));
}

static bool
s_rule_matches (const s_rule_t *rule, const sb_event_t *event, const char *text)
{
    if (!s_mask_has (rule->providers, (int) event->provider)
        || !s_mask_has (rule->channels, (int) event->channel)
        || !s_mask_has (rule->kinds, (int) event->kind))
        return false;
    size_t size = strlen (text);
    switch (rule->how) {
        case S_TEXT_ANY: return true;
        case S_TEXT_KEYWORD: return s_words_match_keyword (&rule->words, text);
        case S_TEXT_EXACT:
        case S_TEXT_PREFIX:
            for (size_t i = 0; i < rule->words.count; i++) {
                const char *word = rule->words.items[i];
                size_t word_size = strlen (word);
                if (rule->how == S_TEXT_EXACT ? word_size != size : word_size > size)
                    continue;
                if (rule->ignore_case ? s_equal_nocase (text, word, word_size)
                                      : memcmp (text, word, word_size) == 0)
                    return true;
            }
            return false;
        case S_TEXT_REGEX: return regexec (&rule->regex, text, 0, NULL, 0) == 0;
    }
    return false;
}

//  An event's field for a placeholder ("" when missing).
static const char *
s_field_value (const sb_event_t *event, s_field_t field)
{
    const char *value = NULL;
    switch (field) {
        case S_FIELD_PROFILE_NAME: value = event->profile_name; break;
        case S_FIELD_TEXT: value = event->text; break;
        case S_FIELD_FROM: value = event->from; break;
        case S_FIELD_TO: value = event->to; break;
        case S_FIELD_DIGITS: value = event->digits; break;
        default: break;
    }
    return value ? value : "";
}

//  Length of the longest prefix of buf [0..size) that does not end inside
//  a UTF-8 sequence.
static size_t
s_utf8_cut (const char *buf, size_t size)
{
    size_t start = size;
    //  Walk back over at most three continuation bytes to the lead byte
    for (int i = 0; i < 4 && start > 0; i++) {
        start--;
        unsigned char c = (unsigned char) buf[start];
        if ((c & 0xC0) != 0x80) {
            size_t need = c < 0x80             ? 1
                          : (c & 0xE0) == 0xC0 ? 2
                          : (c & 0xF0) == 0xE0 ? 3
                          : (c & 0xF8) == 0xF0 ? 4
                                               : 1;
            return start + need <= size ? size : start;
        }
    }
    return size;
}

//  Render the rule's template for the event. Caller owns the result.
static char *
s_render (const s_rule_t *rule, const sb_event_t *event)
{
    size_t total = 0;
    for (size_t i = 0; i < rule->part_count; i++) {
        const s_part_t *part = &rule->parts[i];
        total += part->field == S_FIELD_LITERAL ? part->size
                                                : strlen (s_field_value (event, part->field));
        if (total > SB_RULES_REPLY_MAX)
            break;
    }
    size_t capacity = total > SB_RULES_REPLY_MAX ? SB_RULES_REPLY_MAX : total;
    char *out = (char *) malloc (capacity + 1);
    if (!out)
        return NULL;
    size_t used = 0;
    for (size_t i = 0; i < rule->part_count && used < capacity; i++) {
        const s_part_t *part = &rule->parts[i];
        const char *value = part->literal;
        size_t size = part->size;
        if (part->field != S_FIELD_LITERAL) {
            value = s_field_value (event, part->field);
            size = strlen (value);
        }
        if (size > capacity - used)
            size = capacity - used;
        memcpy (out + used, value, size);
        used += size;
    }
    if (total > capacity)
        used = s_utf8_cut (out, used);
    out[used] = '\0';
    return out;
}

//  What a publish rule captured from the text it matched: the part a
//  regex found (the code in "Your code is 123456"), else the whole text
//  (a gather's digits, a keyword); at most SB_RULES_CAPTURE_MAX bytes.
//  Caller owns the return value; NULL when out of memory.
static char *
s_capture (const s_rule_t *rule, const char *text)
{
    size_t from = 0, size = strlen (text);
    regmatch_t m[1];
    if (rule->how == S_TEXT_REGEX && regexec (&rule->regex, text, 1, m, 0) == 0 && m[0].rm_so >= 0
        && m[0].rm_eo > m[0].rm_so) {
        from = (size_t) m[0].rm_so;
        size = (size_t) (m[0].rm_eo - m[0].rm_so);
    }
    if (size > SB_RULES_CAPTURE_MAX)
        size = s_utf8_cut (text + from, SB_RULES_CAPTURE_MAX);
    return s_strndup (text + from, size);
}

int
sb_rules_decide (const sb_rules_t *self, const sb_event_t *event, sb_rule_decision_t *out)
{
    memset (out, 0, sizeof (*out));
    out->action = SB_RULE_NONE;
    if (!self || !event)
        return 0;
    const char *text = s_event_text (event);
    for (size_t i = 0; i < self->count; i++) {
        const s_rule_t *rule = &self->rules[i];
        if (!s_rule_matches (rule, event, text))
            continue;
        out->rule = rule->name;
        out->publish = rule->publish;
        if (rule->publish && !(out->captured = s_capture (rule, text))) {
            sb_error ("rules", "cannot capture the match: out of memory rule=%s", rule->name);
            memset (out, 0, sizeof (*out));
            return -1;
        }
        if (rule->action == SB_RULE_FORWARD) {
            out->action = SB_RULE_FORWARD;
            out->url = rule->url;
            out->timeout_ms = rule->timeout_ms;
        }
        else if (rule->action == SB_RULE_REPLY) {
            char *reply = s_render (rule, event);
            if (!reply) {
                sb_error ("rules", "cannot render reply: out of memory rule=%s", rule->name);
                sb_rule_decision_clear (out);
                return -1;
            }
            size_t size;
            s_trim (reply, &size);
            if (size == 0)
                free (reply);  //  nothing to send: NONE, still naming the rule
            else {
                out->action = SB_RULE_REPLY;
                out->text = reply;
            }
        }
        return 0;
    }
    return 0;
}

void
sb_rule_decision_clear (sb_rule_decision_t *decision)
{
    if (!decision)
        return;
    free (decision->text);
    free (decision->captured);
    memset (decision, 0, sizeof (*decision));
}

bool
sb_rules_is_opt_out (const sb_rules_t *self, const char *text)
{
    return self && text && s_words_match_keyword (&self->opt_out, text);
}

bool
sb_rules_is_opt_in (const sb_rules_t *self, const char *text)
{
    return self && text && s_words_match_keyword (&self->opt_in, text);
}
