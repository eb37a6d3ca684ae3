/*  test_sb_rules: loading reply rules from YAML and deciding on events.

    Silent on success; prints file:line and what differed on failure. Run
    from tests/ (it loads ../examples/rules.yaml). Reads as the module's
    usage example: load a file, decide on an event, clear the decision.
*/
#include "sb_rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb_check.h"

//  Load YAML that must be good; the name in messages is "t.yaml".
static sb_rules_t *
s_load_at (const char *yaml, int line)
{
    char err[512];
    sb_rules_t *rules = sb_rules_load_string (yaml, "t.yaml", err, sizeof (err));
    if (!rules) {
        fprintf (stderr, "%s:%d: load failed: %s\n", __FILE__, line, err);
        s_failures++;
    }
    return rules;
}
#define s_load(yaml) s_load_at ((yaml), __LINE__)

//  Load YAML that must fail with an error starting with want
//  ("t.yaml:LINE: message...").
static void
s_load_error_at (const char *yaml, const char *want, int line)
{
    char err[512] = "(unset)";
    sb_rules_t *rules = sb_rules_load_string (yaml, "t.yaml", err, sizeof (err));
    if (rules) {
        fprintf (stderr, "%s:%d: load succeeded, want error \"%s\"\n", __FILE__, line, want);
        s_failures++;
        sb_rules_destroy (&rules);
    }
    else if (strncmp (err, want, strlen (want)) != 0) {
        fprintf (stderr, "%s:%d: error \"%s\", want it to start with \"%s\"\n", __FILE__, line, err,
                 want);
        s_failures++;
    }
}
#define s_load_error(yaml, want) s_load_error_at ((yaml), (want), __LINE__)

//  An event as the ingress would publish it. text may be NULL.
static sb_event_t *
s_event (int provider, int channel, int kind, const char *text)
{
    sb_event_t *event = sb_event_new ();
    if (!event) {
        fprintf (stderr, "out of memory\n");
        exit (1);
    }
    event->provider = provider;
    event->channel = channel;
    event->kind = kind;
    if (sb_event_set (&event->text, text)) {
        fprintf (stderr, "out of memory\n");
        exit (1);
    }
    return event;
}

static sb_event_t *
s_sms (const char *text)
{
    return s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_SMS, SB_KIND_MESSAGE, text);
}

//  Decide on an event and check the rule name (NULL: no rule) and, for
//  REPLY, the text. Frees the event.
static void
s_expect_at (const sb_rules_t *rules, sb_event_t *event, sb_rule_action_t action, const char *rule,
             const char *text, int line)
{
    sb_rule_decision_t decision;
    int rc = sb_rules_decide (rules, event, &decision);
    if (rc != 0 || decision.action != action || (rule == NULL) != (decision.rule == NULL)
        || (rule && strcmp (rule, decision.rule) != 0) || (text == NULL) != (decision.text == NULL)
        || (text && strcmp (text, decision.text) != 0)) {
        fprintf (stderr,
                 "%s:%d: decision rc=%d action=%d rule=%s text=\"%s\", want action=%d rule=%s "
                 "text=\"%s\"\n",
                 __FILE__, line, rc, (int) decision.action,
                 decision.rule ? decision.rule : "(none)", decision.text ? decision.text : "(null)",
                 (int) action, rule ? rule : "(none)", text ? text : "(null)");
        s_failures++;
    }
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);
}
#define s_expect(rules, event, action, rule, text)                                                 \
    s_expect_at ((rules), (event), (action), (rule), (text), __LINE__)

//  Shorthand: the rule that decides on a Twilio SMS with this text.
#define s_expect_sms(rules, text, action, rule, reply)                                             \
    s_expect_at ((rules), s_sms (text), (action), (rule), (reply), __LINE__)

//  Write bytes to a temporary file; returns its path (caller frees, unlinks).
static char *
s_temp_file (const void *data, size_t size)
{
    char *path = strdup ("/tmp/test_sb_rules_XXXXXX");
    int fd = path ? mkstemp (path) : -1;
    if (fd < 0 || write (fd, data, size) != (ssize_t) size) {
        fprintf (stderr, "cannot write a temporary file\n");
        exit (1);
    }
    close (fd);
    return path;
}


static void
s_test_text_matches (void)
{
    sb_rules_t *rules = s_load (
        "rules:\n"
        "  - name: exact\n"
        "    match: { text: { exact: \"Exact Text\" } }\n"
        "    reply: exact\n"
        "  - name: exact-list-nocase\n"
        "    match: { text: { exact: [alpha, beta], ignore_case: true } }\n"
        "    reply: exact2\n"
        "  - name: keyword\n"
        "    match: { text: { keyword: Menu } }\n"
        "    reply: keyword\n"
        "  - name: keywords\n"
        "    match: { text: { keyword: [\"  hours \", opening hours] } }\n"
        "    reply: keywords\n"
        "  - name: prefix\n"
        "    match: { text: { prefix: \"bot \" } }\n"
        "    reply: prefix\n"
        "  - name: prefix-nocase\n"
        "    match: { text: { prefix: [\"ask \", \"q:\"], ignore_case: true } }\n"
        "    reply: prefix2\n"
        "  - name: regex\n"
        "    match: { text: { regex: '^\\$[0-9]+\\.[0-9]{2}$' } }\n"
        "    reply: regex\n"
        "  - name: regex-alt\n"
        "    match: { text: { regex: \"(^|[[:space:]])(yes|ok)[.!?]*$\", ignore_case: true } }\n"
        "    reply: regex2\n"
        "  - name: regex-brackets\n"
        "    match: { text: { regex: '\\(\\*\\)|\\[x\\]' } }\n"
        "    reply: regex3\n"
        "  - name: any\n"
        "    match: { text: { any: true } }\n"
        "    reply: any\n");
    CHECK (rules);
    if (!rules)
        return;
    CHECK (sb_rules_count (rules) == 10);

    //  exact: byte for byte, whole text
    s_expect_sms (rules, "Exact Text", SB_RULE_REPLY, "exact", "exact");
    s_expect_sms (rules, "exact text", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "Exact Text ", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "Exact", SB_RULE_REPLY, "any", "any");
    //  exact list with ignore_case
    s_expect_sms (rules, "BETA", SB_RULE_REPLY, "exact-list-nocase", "exact2");
    s_expect_sms (rules, "Alpha", SB_RULE_REPLY, "exact-list-nocase", "exact2");
    s_expect_sms (rules, "alpha ", SB_RULE_REPLY, "any", "any");

    //  keyword: trimmed whole text, ignoring case; not a word in a sentence
    s_expect_sms (rules, "menu", SB_RULE_REPLY, "keyword", "keyword");
    s_expect_sms (rules, "  MENU\r\n", SB_RULE_REPLY, "keyword", "keyword");
    s_expect_sms (rules, "\tmEnU ", SB_RULE_REPLY, "keyword", "keyword");
    s_expect_sms (rules, "the menu", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "menus", SB_RULE_REPLY, "any", "any");
    //  keyword list; keywords are trimmed at load, inner spaces kept
    s_expect_sms (rules, "Hours", SB_RULE_REPLY, "keywords", "keywords");
    s_expect_sms (rules, " opening HOURS ", SB_RULE_REPLY, "keywords", "keywords");
    s_expect_sms (rules, "opening  hours", SB_RULE_REPLY, "any", "any");

    //  prefix: case-sensitive by default
    s_expect_sms (rules, "bot what time is it", SB_RULE_REPLY, "prefix", "prefix");
    s_expect_sms (rules, "bot ", SB_RULE_REPLY, "prefix", "prefix");
    s_expect_sms (rules, "Bot hi", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "bot", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, " bot hi", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "ASK me", SB_RULE_REPLY, "prefix-nocase", "prefix2");
    s_expect_sms (rules, "Q:why", SB_RULE_REPLY, "prefix-nocase", "prefix2");

    //  regex with special characters, anchored by the author
    s_expect_sms (rules, "$12.50", SB_RULE_REPLY, "regex", "regex");
    s_expect_sms (rules, "$12.5", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "x$12.50", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "$12x50", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, "Yes!!", SB_RULE_REPLY, "regex-alt", "regex2");
    s_expect_sms (rules, "well OK.", SB_RULE_REPLY, "regex-alt", "regex2");
    s_expect_sms (rules, "yesterday", SB_RULE_REPLY, "any", "any");
    //  unanchored: found anywhere
    s_expect_sms (rules, "tick [x] here", SB_RULE_REPLY, "regex-brackets", "regex3");
    s_expect_sms (rules, "a (*) b", SB_RULE_REPLY, "regex-brackets", "regex3");
    s_expect_sms (rules, "a (x) b", SB_RULE_REPLY, "any", "any");

    //  any: empty and missing text too
    s_expect_sms (rules, "", SB_RULE_REPLY, "any", "any");
    s_expect_sms (rules, NULL, SB_RULE_REPLY, "any", "any");
    sb_event_t *event = s_sms (NULL);
    event->text = NULL;  //  a hand-built event with a NULL field is handled too
    s_expect (rules, event, SB_RULE_REPLY, "any", "any");
    sb_rules_destroy (&rules);
    CHECK (rules == NULL);
    sb_rules_destroy (&rules);  //  NULL is a no-op
}

static void
s_test_filters (void)
{
    sb_rules_t *rules = s_load ("rules:\n"
                                "  - name: meta-only\n"
                                "    match: { provider: meta, text: { keyword: who } }\n"
                                "    reply: meta\n"
                                "  - name: sms-or-voice\n"
                                "    match: { channel: [sms, voice], text: { keyword: who } }\n"
                                "    reply: sms-or-voice\n"
                                "  - name: statuses\n"
                                "    match: { kind: status }\n"
                                "    none: true\n"
                                "  - name: calls-and-gathers\n"
                                "    match: { kind: [call, gather], channel: voice }\n"
                                "    reply: voice\n"
                                "  - name: twilio-whatsapp\n"
                                "    match: { provider: Twilio, channel: WhatsApp }\n"
                                "    reply: twa\n"
                                "  - name: default-kind\n"
                                "    reply: message\n"
                                "  - name: any-kind\n"
                                "    match: { kind: any, provider: any, channel: any }\n"
                                "    reply: anything\n");
    CHECK (rules);
    if (!rules)
        return;
    s_expect (rules, s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "who"),
              SB_RULE_REPLY, "meta-only", "meta");
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_SMS, SB_KIND_MESSAGE, "who"),
              SB_RULE_REPLY, "sms-or-voice", "sms-or-voice");
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "who"),
              SB_RULE_REPLY, "twilio-whatsapp", "twa");
    s_expect (rules, s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "hi"),
              SB_RULE_REPLY, "default-kind", "message");
    //  the default kind is message: a status goes to its own rule...
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_SMS, SB_KIND_STATUS, NULL),
              SB_RULE_NONE, "statuses", NULL);
    //  ... a call or gather on voice to theirs
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_CALL, NULL),
              SB_RULE_REPLY, "calls-and-gathers", "voice");
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, "1"),
              SB_RULE_REPLY, "calls-and-gathers", "voice");
    //  a call on another channel (not realistic) falls to the kind: any rule
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_SMS, SB_KIND_CALL, NULL),
              SB_RULE_REPLY, "any-kind", "anything");
    //  unspecified enums match only "any"
    s_expect (rules, s_event (0, 0, 0, "who"), SB_RULE_REPLY, "any-kind", "anything");
    s_expect (rules, s_event (0, SB_CHANNEL_SMS, SB_KIND_MESSAGE, "who"), SB_RULE_REPLY,
              "sms-or-voice", "sms-or-voice");
    s_expect (rules, s_event (99, 99, 99, "who"), SB_RULE_REPLY, "any-kind", "anything");
    sb_rules_destroy (&rules);

    //  No rule matches: NONE, no rule name
    rules = s_load ("rules:\n  - name: only-hi\n    match: { text: { exact: hi } }\n"
                    "    reply: hello\n");
    CHECK (rules);
    s_expect_sms (rules, "hi", SB_RULE_REPLY, "only-hi", "hello");
    s_expect_sms (rules, "ho", SB_RULE_NONE, NULL, NULL);
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_SMS, SB_KIND_STATUS, "hi"),
              SB_RULE_NONE, NULL, NULL);
    sb_rules_destroy (&rules);

    //  An empty rule list is allowed: never reply
    rules = s_load ("rules: []\n");
    CHECK (rules && sb_rules_count (rules) == 0);
    s_expect_sms (rules, "hi", SB_RULE_NONE, NULL, NULL);
    sb_rules_destroy (&rules);
}

static void
s_test_gather_text (void)
{
    sb_rules_t *rules = s_load ("rules:\n"
                                "  - name: code\n"
                                "    match: { kind: gather, text: { regex: \"^[0-9]{6}$\" } }\n"
                                "    reply: \"code {digits}\"\n"
                                "  - name: spoken-yes\n"
                                "    match: { kind: gather, text: { keyword: yes } }\n"
                                "    reply: \"you said {text}\"\n"
                                "  - name: other-gather\n"
                                "    match: { kind: gather }\n"
                                "    none: true\n");
    CHECK (rules);
    if (!rules)
        return;
    //  digits are the text of a gather
    sb_event_t *event = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, NULL);
    sb_event_set (&event->digits, "123456");
    s_expect (rules, event, SB_RULE_REPLY, "code", "code 123456");
    event = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, "yes");
    sb_event_set (&event->digits, "12345");
    s_expect (rules, event, SB_RULE_NONE, "other-gather", NULL);
    //  no digits: the speech result
    event = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, "Yes.");
    sb_event_set (&event->speech_result, " Yes ");
    s_expect (rules, event, SB_RULE_REPLY, "spoken-yes", "you said Yes.");
    event = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, NULL);
    sb_event_set (&event->speech_result, "123456");
    s_expect (rules, event, SB_RULE_REPLY, "code", "code ");
    //  neither: the text
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, "YES"),
              SB_RULE_REPLY, "spoken-yes", "you said YES");
    //  a message's digits are not its text
    event = s_sms ("hello");
    sb_event_set (&event->digits, "123456");
    s_expect (rules, event, SB_RULE_NONE, NULL, NULL);
    sb_rules_destroy (&rules);
}

static void
s_test_first_match_wins (void)
{
    sb_rules_t *rules = s_load ("rules:\n"
                                "  - name: first\n"
                                "    match: { text: { prefix: a } }\n"
                                "    reply: one\n"
                                "  - name: second\n"
                                "    match: { text: { exact: abc } }\n"
                                "    reply: two\n"
                                "  - name: stopper\n"
                                "    match: { text: { exact: xyz } }\n"
                                "    none: true\n"
                                "  - name: catch-all\n"
                                "    reply: three\n");
    CHECK (rules);
    s_expect_sms (rules, "abc", SB_RULE_REPLY, "first", "one");
    s_expect_sms (rules, "xyz", SB_RULE_NONE, "stopper", NULL);
    s_expect_sms (rules, "zzz", SB_RULE_REPLY, "catch-all", "three");
    sb_rules_destroy (&rules);
}

static void
s_test_actions (void)
{
    sb_rules_t *rules =
        s_load ("rules:\n"
                "  - name: bot\n"
                "    match: { text: { prefix: \"bot \", ignore_case: true } }\n"
                "    forward: { url: \"http://127.0.0.1:9000/bot\", timeout_ms: 3000 }\n"
                "  - name: bot2\n"
                "    match: { text: { prefix: \"ai \" } }\n"
                "    forward:\n"
                "      url: https://bots.example.com:8443/v1/answer?x=1\n"
                "    publish: false\n"
                "  - name: code\n"
                "    match: { text: { regex: \"^[0-9]{4}$\" } }\n"
                "    publish: true\n"
                "    none: true\n"
                "  - name: echo-publish\n"
                "    publish: true\n"
                "    reply: \"got {text}\"\n");
    CHECK (rules);
    if (!rules)
        return;
    sb_rule_decision_t decision;
    sb_event_t *event = s_sms ("BOT hello");
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.action == SB_RULE_FORWARD);
    CHECK_STR (decision.rule, "bot");
    CHECK_STR (decision.url, "http://127.0.0.1:9000/bot");
    CHECK (decision.timeout_ms == 3000);
    CHECK (decision.text == NULL);
    CHECK (!decision.publish);
    sb_rule_decision_clear (&decision);
    CHECK (decision.rule == NULL && decision.url == NULL && decision.action == SB_RULE_NONE);
    sb_rule_decision_clear (&decision);  //  twice is fine
    sb_event_destroy (&event);

    event = s_sms ("ai what");
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.action == SB_RULE_FORWARD);
    CHECK_STR (decision.url, "https://bots.example.com:8443/v1/answer?x=1");
    CHECK (decision.timeout_ms == 5000);  //  the default
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);

    event = s_sms ("4321");
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.action == SB_RULE_NONE);
    CHECK_STR (decision.rule, "code");
    CHECK (decision.publish);
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);

    event = s_sms ("hi");
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.action == SB_RULE_REPLY);
    CHECK_STR (decision.rule, "echo-publish");
    CHECK_STR (decision.text, "got hi");
    CHECK (decision.publish);
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);

    //  NULL rules or event: no decision
    CHECK (sb_rules_decide (NULL, NULL, &decision) == 0 && decision.action == SB_RULE_NONE
           && decision.rule == NULL);
    sb_rules_destroy (&rules);
}

static void
s_test_templates (void)
{
    sb_rules_t *rules = s_load ("rules:\n"
                                "  - name: all\n"
                                "    match: { text: { exact: all } }\n"
                                "    reply: \"[{profile_name}|{text}|{from}|{to}|{digits}]\"\n"
                                "  - name: braces\n"
                                "    match: { text: { exact: braces } }\n"
                                "    reply: \"{{text}} is {text}; {{ }} {{{text}}}\"\n"
                                "  - name: only-text\n"
                                "    match: { text: { prefix: echo } }\n"
                                "    reply: \"{text}\"\n"
                                "  - name: only-name\n"
                                "    match: { text: { exact: name } }\n"
                                "    reply: \"{profile_name}\"\n"
                                "  - name: unicode\n"
                                "    match: { text: { exact: ü } }\n"
                                "    reply: \"Grüße, {profile_name} 👋\"\n"
                                "  - name: long\n"
                                "    match: { text: { prefix: long } }\n"
                                "    reply: \"> {text}\"\n");
    CHECK (rules);
    if (!rules)
        return;
    sb_event_t *event = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "all");
    sb_event_set (&event->profile_name, "Ana");
    sb_event_set (&event->from, "16505551234");
    sb_event_set (&event->to, "15550001111");
    sb_event_set (&event->digits, "42");
    s_expect (rules, event, SB_RULE_REPLY, "all", "[Ana|all|16505551234|15550001111|42]");
    //  missing fields render as nothing
    s_expect_sms (rules, "all", SB_RULE_REPLY, "all", "[|all|||]");
    event = s_sms ("all");
    event->profile_name = NULL;
    event->from = NULL;
    s_expect (rules, event, SB_RULE_REPLY, "all", "[|all|||]");
    //  {{ and }} are literal braces; a field's braces are not re-read
    s_expect_sms (rules, "braces", SB_RULE_REPLY, "braces", "{text} is braces; { } {braces}");
    s_expect_sms (rules, "echo {from}", SB_RULE_REPLY, "only-text", "echo {from}");
    //  a reply that renders empty is not sent, but the rule still decides
    s_expect_sms (rules, "name", SB_RULE_NONE, "only-name", NULL);
    event = s_sms ("name");
    sb_event_set (&event->profile_name, " \t ");
    s_expect (rules, event, SB_RULE_NONE, "only-name", NULL);
    event = s_sms ("name");
    sb_event_set (&event->profile_name, "Bo");
    s_expect (rules, event, SB_RULE_REPLY, "only-name", "Bo");
    //  UTF-8 passes through
    event = s_sms ("ü");
    sb_event_set (&event->profile_name, "Zoë");
    s_expect (rules, event, SB_RULE_REPLY, "unicode", "Grüße, Zoë 👋");

    //  Capped at 4096 bytes, never cutting a UTF-8 character: "> " then
    //  "long" then 3-byte characters, so byte 4096 falls inside one
    char *text = (char *) malloc (10000);
    CHECK (text);
    if (!text)
        return;
    size_t used = 4;
    memcpy (text, "long", 4);
    for (; used + 3 < 9000; used += 3)
        memcpy (text + used, "€", 3);  //  E2 82 AC
    text[used] = '\0';
    sb_rule_decision_t decision;
    event = s_sms (text);
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.action == SB_RULE_REPLY);
    size_t size = decision.text ? strlen (decision.text) : 0;
    //  2 + 4 + 3k <= 4096: k = 1363, 4095 bytes
    CHECK (size == 4095);
    CHECK (decision.text && strncmp (decision.text, "> long€", strlen ("> long€")) == 0);
    CHECK (decision.text && strcmp (decision.text + size - 3, "€") == 0);
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);
    //  plain ASCII is cut at exactly 4096
    memset (text, 'x', 9000);
    memcpy (text, "long", 4);
    text[9000] = '\0';
    event = s_sms (text);
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.text && strlen (decision.text) == 4096);
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);
    //  a 4-byte character straddling the cap
    memset (text, 'x', 9000);
    memcpy (text, "long", 4);
    memcpy (text + 4092, "\xF0\x9F\x91\x8B", 4);  //  bytes 4094..4097 of the reply
    event = s_sms (text);
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.text && strlen (decision.text) == 4094);
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);
    //  and one ending exactly at the cap is kept
    memset (text, 'x', 9000);
    memcpy (text, "long", 4);
    memcpy (text + 4090, "\xF0\x9F\x91\x8B", 4);  //  bytes 4092..4095
    event = s_sms (text);
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.text && strlen (decision.text) == 4096
           && memcmp (decision.text + 4092, "\xF0\x9F\x91\x8B", 4) == 0);
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);
    free (text);
    sb_rules_destroy (&rules);
}

static void
s_test_opt_out (void)
{
    //  Defaults: Twilio's standard keywords
    sb_rules_t *rules = s_load ("rules: []\n");
    CHECK (rules);
    const char *out[] = {"STOP", "stop", " Stop ", "\tSTOPALL\r\n", "unsubscribe", "Cancel",
                         "END",  "quit", NULL};
    for (int i = 0; out[i]; i++) {
        CHECK (sb_rules_is_opt_out (rules, out[i]));
        CHECK (!sb_rules_is_opt_in (rules, out[i]));
    }
    const char *in[] = {"START", "start", " Yes", "unstop\n", NULL};
    for (int i = 0; in[i]; i++) {
        CHECK (sb_rules_is_opt_in (rules, in[i]));
        CHECK (!sb_rules_is_opt_out (rules, in[i]));
    }
    const char *neither[] = {"",      "   ",   "STOP please", "please stop", "S T O P",
                             "STOPP", "stop.", "STARTS",      "yess",        NULL};
    for (int i = 0; neither[i]; i++) {
        CHECK (!sb_rules_is_opt_out (rules, neither[i]));
        CHECK (!sb_rules_is_opt_in (rules, neither[i]));
    }
    CHECK (!sb_rules_is_opt_out (rules, NULL));
    CHECK (!sb_rules_is_opt_in (rules, NULL));
    CHECK (!sb_rules_is_opt_out (NULL, "STOP"));
    sb_rules_destroy (&rules);

    //  Configured: replace the defaults; a single string is a list of one;
    //  words are trimmed; YES is a word, not a YAML 1.1 boolean
    rules = s_load ("opt_out: [\"  halt \", Arrêt, 'no more']\n"
                    "opt_in: YES\n"
                    "rules: []\n");
    CHECK (rules);
    CHECK (sb_rules_is_opt_out (rules, "HALT"));
    CHECK (sb_rules_is_opt_out (rules, "arrêt"));
    CHECK (sb_rules_is_opt_out (rules, " No More "));
    CHECK (!sb_rules_is_opt_out (rules, "STOP"));
    CHECK (sb_rules_is_opt_in (rules, "yes"));
    CHECK (!sb_rules_is_opt_in (rules, "START"));
    sb_rules_destroy (&rules);

    //  An empty list turns it off; the other list keeps its defaults
    rules = s_load ("opt_out: []\nrules: []\n");
    CHECK (rules);
    CHECK (!sb_rules_is_opt_out (rules, "STOP"));
    CHECK (sb_rules_is_opt_in (rules, "START"));
    sb_rules_destroy (&rules);

    //  A word in both lists, including a default one, is an error
    s_load_error ("opt_out: [STOP, start]\nrules: []\n",
                  "t.yaml:1: 'START' is both an opt-out and an opt-in keyword");
    s_load_error ("opt_in: [go]\nopt_out:\n  - halt\n  - GO\nrules: []\n",
                  "t.yaml:4: 'go' is both an opt-out and an opt-in keyword");
    s_load_error ("opt_out: [STOP, \"  \"]\nrules: []\n", "t.yaml:1: opt_out: empty string");
    s_load_error ("opt_out: {a: b}\nrules: []\n",
                  "t.yaml:1: opt_out: expected a string, got a mapping");
}

//  Every load error names the line and the problem.
static void
s_test_load_errors (void)
{
    //  YAML syntax
    s_load_error ("rules:\n  - name: a\n    reply: \"unterminated\n",
                  "t.yaml:3: YAML syntax error: found unexpected end of stream (while scanning a "
                  "quoted scalar)");
    s_load_error ("rules:\n  - name: a\n    reply: b: c\n",
                  "t.yaml:3: YAML syntax error: mapping values are not allowed in this context");
    s_load_error ("rules: [{name: a, reply: b}\n", "t.yaml:2: YAML syntax error: ");
    s_load_error ("rules:\n  - name: a\n    reply: hi\n  oops\n",
                  "t.yaml:4: YAML syntax error: could not find expected ':' (while scanning a "
                  "simple key)");
    s_load_error ("rules:\n  - name: a\n    reply: hi\n   - name: b\n",
                  "t.yaml:4: YAML syntax error: ");
    s_load_error ("rules:\n\t- name: x\n", "t.yaml:2: YAML syntax error: ");
    //  not a mapping at the top, empty, several documents
    s_load_error ("", "t.yaml:1: the file is empty");
    s_load_error ("# only a comment\n\n", "t.yaml:3: the file is empty");
    s_load_error ("- name: a\n", "t.yaml:1: expected a mapping with 'rules'");
    s_load_error ("hello\n", "t.yaml:1: expected a mapping with 'rules'");
    s_load_error ("rules: []\n---\nrules: []\n",
                  "t.yaml:2: only one YAML document is allowed in a rules file");
    s_load_error ("opt_out: [STOP]\n", "t.yaml:1: no 'rules' list (write rules: [] for none)");
    //  unknown keys (typo protection) at each level
    s_load_error ("rules: []\nrule: []\n",
                  "t.yaml:2: unknown key 'rule' at the top level (expected one of: opt_out, "
                  "opt_in, rules)");
    s_load_error ("rules:\n  - name: a\n    repy: hi\n",
                  "t.yaml:3: unknown key 'repy' in a rule (expected one of: name, match, reply, "
                  "forward, none, publish)");
    s_load_error ("rules:\n  - name: a\n    match:\n      chanel: sms\n    reply: hi\n",
                  "t.yaml:4: unknown key 'chanel' in match");
    s_load_error ("rules:\n  - name: a\n    match: { text: { keywords: hi } }\n    reply: hi\n",
                  "t.yaml:3: unknown key 'keywords' in text");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"http://x/\", timeout: 5 }\n",
                  "t.yaml:3: unknown key 'timeout' in forward");
    s_load_error ("rules:\n  - name: a\n    reply: hi\n    {x: 1}: 2\n",
                  "t.yaml:4: expected a key in a rule, got a mapping");
    //  repeated keys
    s_load_error ("rules:\n  - name: a\n    name: b\n    reply: hi\n",
                  "t.yaml:3: 'name' given twice in a rule");
    s_load_error ("rules: []\nrules: []\n", "t.yaml:2: 'rules' given twice at the top level");
    //  wrong types
    s_load_error ("rules: {}\n", "t.yaml:1: rules: expected a list, got a mapping");
    s_load_error ("rules:\n", "t.yaml:1: rules: expected a list, got nothing");
    s_load_error ("rules:\n  - menu\n", "t.yaml:2: rules: each rule is a mapping, got a scalar");
    s_load_error ("rules:\n  - name: [a]\n    reply: hi\n",
                  "t.yaml:2: name: expected a string, got a list");
    s_load_error ("rules:\n  - name: a\n    reply:\n",
                  "t.yaml:3: reply: expected a string, got nothing");
    s_load_error ("rules:\n  - name: a\n    reply: { text: hi }\n",
                  "t.yaml:3: reply: expected a string, got a mapping");
    s_load_error ("rules:\n  - name: a\n    match: sms\n    reply: hi\n",
                  "t.yaml:3: match: expected a mapping, got a scalar");
    s_load_error ("rules:\n  - name: a\n    match: { text: menu }\n    reply: hi\n",
                  "t.yaml:3: text: expected a mapping, got a scalar");
    s_load_error ("rules:\n  - name: a\n    publish: \"true\"\n    reply: hi\n",
                  "t.yaml:3: publish: expected true or false (unquoted)");
    s_load_error ("rules:\n  - name: a\n    publish: yes\n    reply: hi\n",
                  "t.yaml:3: publish: expected true or false (unquoted)");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"http://x/\", timeout_ms: fast }\n",
                  "t.yaml:3: timeout_ms: expected a whole number from 100 to 30000 (unquoted)");
    s_load_error ("rules:\n  - name: a\n    forward:\n      url: \"http://x/\"\n"
                  "      timeout_ms: 60000\n",
                  "t.yaml:5: timeout_ms: expected a whole number from 100 to 30000");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"http://x/\", timeout_ms: 99 }\n",
                  "t.yaml:3: timeout_ms: expected a whole number");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"http://x/\", timeout_ms: -1 }\n",
                  "t.yaml:3: timeout_ms: expected a whole number");
    s_load_error (
        "rules:\n  - name: a\n    forward: { url: \"http://x/\", timeout_ms: 99999999999 }\n",
        "t.yaml:3: timeout_ms: expected a whole number");
    s_load_error ("rules:\n  - name: a\n    forward: http://x/\n",
                  "t.yaml:3: forward: expected a mapping, got a scalar");
    s_load_error ("rules:\n  - name: a\n    match:\n      kind: gathr\n    none: true\n",
                  "t.yaml:4: kind: unknown value 'gathr' (expected one of: any, message, status, "
                  "call, gather, echo, preference, template, account, other)");
    s_load_error ("rules:\n  - name: a\n    match:\n      channel:\n        - sms\n        - fax\n"
                  "    none: true\n",
                  "t.yaml:6: channel: unknown value 'fax' (expected one of: any, sms, whatsapp, "
                  "voice, rcs)");
    s_load_error ("rules:\n  - name: a\n    match: { provider: [] }\n    none: true\n",
                  "t.yaml:3: provider: empty list");
    s_load_error ("rules:\n  - name: a\n    match: { text: { keyword: \" \" } }\n    none: true\n",
                  "t.yaml:3: keyword: empty string");
    s_load_error ("rules:\n  - name: a\n    match: { text: { prefix: \"\" } }\n    none: true\n",
                  "t.yaml:3: prefix: empty string");
    s_load_error ("rules:\n  - name: a\n    match: { text: { exact: [a, [b]] } }\n    none: true\n",
                  "t.yaml:3: exact: expected a string, got a list");
    s_load_error (
        "rules:\n  - name: a\n    match: { text: { exact: \"a\\0b\" } }\n    none: true\n",
        "t.yaml:3: exact: contains a NUL character");
    //  text: exactly one condition; ignore_case where it applies
    s_load_error (
        "rules:\n  - name: a\n    match:\n      text:\n        exact: a\n        prefix: b\n"
        "    none: true\n",
        "t.yaml:6: text: give only one of exact, keyword, prefix, regex, any");
    s_load_error (
        "rules:\n  - name: a\n    match: { text: { ignore_case: true } }\n    none: true\n",
        "t.yaml:3: text: give one of exact, keyword, prefix, regex, any");
    s_load_error ("rules:\n  - name: a\n    match: { text: {} }\n    none: true\n",
                  "t.yaml:3: text: give one of");
    s_load_error ("rules:\n  - name: a\n    match: { text: { keyword: a, ignore_case: false } }\n"
                  "    none: true\n",
                  "t.yaml:3: text: ignore_case applies to exact, prefix and regex only");
    s_load_error ("rules:\n  - name: a\n    match: { text: { any: false } }\n    none: true\n",
                  "t.yaml:3: any: only 'any: true' makes sense");
    //  actions: missing, two, none: false
    s_load_error ("rules:\n  - name: ok\n    reply: hi\n  - name: idle\n    match: { kind: any }\n",
                  "t.yaml:4: rule 'idle' has no action: give one of reply, forward, none");
    s_load_error ("rules:\n  - name: a\n    reply: hi\n    none: true\n",
                  "t.yaml:4: a rule takes only one of reply, forward, none");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"http://x/\" }\n    reply: hi\n",
                  "t.yaml:4: a rule takes only one of reply, forward, none");
    s_load_error ("rules:\n  - name: a\n    none: false\n",
                  "t.yaml:3: none: only 'none: true' makes sense");
    s_load_error ("rules:\n  - name: a\n    forward: { timeout_ms: 1000 }\n",
                  "t.yaml:3: forward: 'url' is required");
    //  names: required, well-formed, unique
    s_load_error ("rules:\n  - name: a\n    reply: x\n  - reply: hi\n",
                  "t.yaml:4: rule 2 has no name");
    s_load_error ("rules:\n  - name: my rule\n    reply: hi\n",
                  "t.yaml:2: name 'my rule': use 1 to 64 letters, digits, '.', '_' or '-'");
    s_load_error ("rules:\n  - name: \"\"\n    reply: hi\n", "t.yaml:2: name '': use 1 to 64");
    s_load_error ("rules:\n  - name: menu\n    reply: a\n  - name: other\n    reply: b\n"
                  "  - reply: c\n    name: menu\n",
                  "t.yaml:7: duplicate rule name 'menu' (first at line 2)");
    //  regex: regcomp's own message
    s_load_error ("rules:\n  - name: a\n    match: { text: { regex: \"(abc\" } }\n    none: true\n",
                  "t.yaml:3: regex '(abc': Unmatched ( or \\(");
    s_load_error ("rules:\n  - name: a\n    match:\n      text:\n        regex: \"[z-a]\"\n"
                  "    none: true\n",
                  "t.yaml:5: regex '[z-a]': Invalid range end");
    s_load_error (
        "rules:\n  - name: a\n    match: { text: { regex: \"a{2,1}\" } }\n    none: true\n",
        "t.yaml:3: regex 'a{2,1}': ");
    s_load_error ("rules:\n  - name: a\n    match: { text: { regex: \"\" } }\n    none: true\n",
                  "t.yaml:3: regex: empty pattern");
    //  URLs
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"ftp://example.com/bot\" }\n",
                  "t.yaml:3: url 'ftp://example.com/bot': expected an http:// or https:// URL");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"example.com/bot\" }\n",
                  "t.yaml:3: url 'example.com/bot': expected an http");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"http://\" }\n",
                  "t.yaml:3: url 'http://': expected an http");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"http://exa mple.com/\" }\n",
                  "t.yaml:3: url 'http://exa mple.com/': expected an http");
    s_load_error ("rules:\n  - name: a\n    forward: { url: \"\" }\n",
                  "t.yaml:3: url '': expected");
    //  templates
    s_load_error ("rules:\n  - name: a\n    reply: \"Hi {name}!\"\n",
                  "t.yaml:3: reply: unknown placeholder {name} (known: {profile_name}, {text}, "
                  "{from}, {to}, {digits}; write {{ for a literal {)");
    s_load_error ("rules:\n  - name: a\n    reply: \"Hi { text }!\"\n",
                  "t.yaml:3: reply: unknown placeholder { text }");
    s_load_error ("rules:\n  - name: a\n    reply: \"Hi {}\"\n",
                  "t.yaml:3: reply: unknown placeholder {}");
    s_load_error ("rules:\n  - name: a\n    reply: \"Hi {text\"\n",
                  "t.yaml:3: reply: unclosed '{' in template (write {{ for a literal {)");
    s_load_error ("rules:\n  - name: a\n    reply: \"smile :-}\"\n",
                  "t.yaml:3: reply: lone '}' in template (write }} for a literal })");
    s_load_error ("rules:\n  - name: a\n    reply: \"  \"\n",
                  "t.yaml:3: reply: empty template (write none: true to send nothing)");
    //  a multi-line block scalar: the line is where the value starts
    s_load_error ("rules:\n  - name: a\n    reply: |\n      line one\n      {oops}\n",
                  "t.yaml:3: reply: unknown placeholder {oops}");
    //  an error in the second rule leaves nothing behind (ASan checks)
    s_load_error (
        "rules:\n  - name: a\n    match: { text: { regex: \"^a$\" } }\n    reply: \"{text}\"\n"
        "  - name: b\n    match: { text: { regex: \"^b$\" } }\n    reply: \"{tex}\"\n",
        "t.yaml:7: reply: unknown placeholder {tex}");

    //  A NULL or tiny error buffer is fine
    CHECK (sb_rules_load_string ("rules: {}", "t.yaml", NULL, 0) == NULL);
    char tiny[8];
    CHECK (sb_rules_load_string ("rules: {}", "t.yaml", tiny, sizeof (tiny)) == NULL);
    CHECK (strlen (tiny) < sizeof (tiny));
    //  NULL name
    char err[256];
    CHECK (sb_rules_load_string ("x: 1", NULL, err, sizeof (err)) == NULL);
    CHECK (strncmp (err, "<rules>:1: unknown key 'x'", 26) == 0);
}

//  Hostile YAML: no crash, no leak, a clear error.
static void
s_test_hostile (void)
{
    //  Billion laughs: anchors and aliases are refused where first seen
    s_load_error ("a: &a [\"lol\", \"lol\"]\n"
                  "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                  "rules: []\n",
                  "t.yaml:1: unknown key 'a'");
    s_load_error ("rules: &r []\n", "t.yaml:1: YAML anchors (&) and aliases (*) are not supported");
    s_load_error ("opt_out: [STOP]\nopt_in: &x [GO]\nrules: []\n",
                  "t.yaml:2: YAML anchors (&) and aliases (*) are not supported");
    s_load_error ("rules:\n  - name: a\n    reply: &t hi\n  - name: b\n    reply: *t\n",
                  "t.yaml:3: YAML anchors (&) and aliases (*) are not supported");
    s_load_error ("rules:\n  - &r\n    name: a\n    reply: hi\n  - *r\n",
                  "t.yaml:2: YAML anchors (&) and aliases (*) are not supported");
    s_load_error ("rules:\n  - name: a\n    reply: *undefined\n", "t.yaml:3: ");
    //  Merge keys are just unknown keys
    s_load_error ("rules:\n  - <<: {name: a}\n    reply: hi\n",
                  "t.yaml:2: unknown key '<<' in a rule");

    //  Very deep nesting: stops at the first unexpected event
    size_t depth = 200000;
    char *deep = (char *) malloc (2 * depth + 32);
    CHECK (deep);
    if (!deep)
        return;
    strcpy (deep, "rules: ");
    size_t used = strlen (deep);
    for (size_t i = 0; i < depth; i++)
        deep[used++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[used++] = ']';
    deep[used] = '\0';
    s_load_error (deep, "t.yaml:1: rules: each rule is a mapping, got a list");
    //  deep mappings where a string is expected, unbalanced
    strcpy (deep, "rules:\n  - name: ");
    used = strlen (deep);
    for (size_t i = 0; i < 100000; i++) {
        memcpy (deep + used, "{a:", 3);
        used += 3;
    }
    deep[used] = '\0';
    s_load_error (deep, "t.yaml:2: name: expected a string, got a mapping");
    //  deep nesting at the top level
    used = 0;
    for (size_t i = 0; i < depth; i++)
        deep[used++] = '[';
    deep[used] = '\0';
    s_load_error (deep, "t.yaml:1: expected a mapping with 'rules'");
    free (deep);

    //  Huge: over 1 MiB is refused before parsing, from a string or a file
    size_t huge_size = 1024 * 1024 + 100;
    char *huge = (char *) malloc (huge_size + 1);
    CHECK (huge);
    if (!huge)
        return;
    memset (huge, '#', huge_size);
    memcpy (huge, "rules: []\n", 10);
    huge[huge_size] = '\0';
    s_load_error (huge, "t.yaml: larger than 1048576 bytes");
    char *path = s_temp_file (huge, huge_size);
    char err[512];
    CHECK (sb_rules_load (path, err, sizeof (err)) == NULL);
    char want[512];
    snprintf (want, sizeof (want), "%s: larger than 1048576 bytes", path);
    CHECK_STR (err, want);
    unlink (path);
    free (path);
    //  ... but a large file under the cap with many rules loads
    used = 0;
    used += (size_t) snprintf (huge + used, huge_size - used, "rules:\n");
    size_t count = 0;
    while (used + 200 < 1024 * 1024 - 100) {
        used += (size_t) snprintf (huge + used, huge_size - used,
                                   "  - name: r%zu\n    match: { text: { exact: \"w%zu\" } }\n"
                                   "    reply: \"reply {text} %zu\"\n",
                                   count, count, count);
        count++;
    }
    sb_rules_t *rules = s_load (huge);
    CHECK (rules && sb_rules_count (rules) == count);
    s_expect_sms (rules, "w7777", SB_RULE_REPLY, "r7777", "reply w7777 7777");
    sb_rules_destroy (&rules);
    free (huge);

    //  An endless file
    CHECK (sb_rules_load ("/dev/zero", err, sizeof (err)) == NULL);
    CHECK_STR (err, "/dev/zero: larger than 1048576 bytes");

    //  Binary garbage and bad encodings, from files (NULs included)
    unsigned char garbage[4096];
    unsigned int seed = 12345;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof (garbage); i++) {
            seed = seed * 1103515245u + 12345u;
            garbage[i] = (unsigned char) (seed >> 16);
        }
        path = s_temp_file (garbage, sizeof (garbage) >> (round % 8));
        err[0] = '\0';
        rules = sb_rules_load (path, err, sizeof (err));
        CHECK (rules == NULL);
        CHECK (strncmp (err, path, strlen (path)) == 0 && strlen (err) > strlen (path) + 2);
        sb_rules_destroy (&rules);
        unlink (path);
        free (path);
    }
    //  Control characters and invalid UTF-8 give the line of the byte
    s_load_error ("rules:\n  - name: a\n    reply: \"x\x01y\"\n",
                  "t.yaml:3: YAML syntax error: control characters are not allowed");
    s_load_error ("rules:\n  - name: a\n    reply: \"x\xC3\x28y\"\n",
                  "t.yaml:3: YAML syntax error: invalid trailing UTF-8 octet");
    s_load_error ("rules: []\n\xFF\xFE",
                  "t.yaml:2: YAML syntax error: invalid leading UTF-8 octet");
    path = s_temp_file ("rules: []\n\0\n", 12);
    CHECK (sb_rules_load (path, err, sizeof (err)) == NULL);
    snprintf (want, sizeof (want), "%s:2: YAML syntax error: control characters", path);
    CHECK (strncmp (err, want, strlen (want)) == 0);
    unlink (path);
    free (path);

    //  A UTF-8 BOM is fine
    rules = s_load ("\xEF\xBB\xBFrules: []\n");
    CHECK (rules);
    sb_rules_destroy (&rules);

    //  Tags are ignored: values are read as their key expects
    rules = s_load ("rules:\n  - name: !!str a\n    reply: !!str hi\n    publish: !!bool true\n");
    CHECK (rules);
    s_expect_sms (rules, "x", SB_RULE_REPLY, "a", "hi");
    sb_rules_destroy (&rules);

    //  Long strings are capped
    char *long_name = (char *) malloc (6000);
    CHECK (long_name);
    if (long_name) {
        strcpy (long_name, "rules:\n  - name: a\n    reply: \"");
        used = strlen (long_name);
        memset (long_name + used, 'y', 4097);
        strcpy (long_name + used + 4097, "\"\n");
        s_load_error (long_name, "t.yaml:3: reply: longer than 4096 bytes");
        free (long_name);
    }
}

//  Files: the path in messages, missing files, directories.
static void
s_test_files (void)
{
    char err[512];
    CHECK (sb_rules_load ("/nonexistent/rules.yaml", err, sizeof (err)) == NULL);
    CHECK_STR (err, "/nonexistent/rules.yaml: cannot open: No such file or directory");
    CHECK (sb_rules_load ("/tmp", err, sizeof (err)) == NULL);
    CHECK_STR (err, "/tmp: cannot read: Is a directory");
    CHECK (sb_rules_load (NULL, err, sizeof (err)) == NULL);
    CHECK_STR (err, "no rules file given");

    const char *bad = "rules:\n  - name: a\n    reply: hi\n  - name: b\n    reply: hi\n    "
                      "forward: {url: http://x/}\n";
    char *path = s_temp_file (bad, strlen (bad));
    CHECK (sb_rules_load (path, err, sizeof (err)) == NULL);
    char want[512];
    snprintf (want, sizeof (want), "%s:6: a rule takes only one of reply, forward, none", path);
    CHECK_STR (err, want);
    unlink (path);
    free (path);
}

//  The shipped example decides as its comments say.
//  Meta's other webhook fields: each kind by name, and the text a rule
//  reads for it (the template's or account's event, the preference's
//  value, the call's stage).
static void
s_test_meta_kinds (void)
{
    char err[256] = "";
    sb_rules_t *rules = sb_rules_load_string (
        "rules:\n"
        "  - { name: tpl, match: { kind: template, text: { exact: REJECTED } }, none: true }\n"
        "  - { name: acct, match: { kind: account, text: { prefix: INCREASED_ } }, none: true }\n"
        "  - { name: stop, match: { kind: preference, text: { keyword: stop } }, none: true }\n"
        "  - { name: ring, match: { kind: call, text: { exact: RINGING } }, none: true }\n"
        "  - { name: any-echo, match: { kind: [echo, other] }, none: true }\n",
        "k.yaml", err, sizeof err);
    CHECK (rules);
    if (!rules) {
        fprintf (stderr, "%s\n", err);
        return;
    }
    sb_event_t *e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_TEMPLATE, NULL);
    sb_event_set (&sb_event_meta_template (e)->event, "REJECTED");
    s_expect (rules, e, SB_RULE_NONE, "tpl", NULL);
    e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_ACCOUNT, NULL);
    sb_event_set (&sb_event_meta_account (e)->event, "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED");
    s_expect (rules, e, SB_RULE_NONE, "acct", NULL);
    e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_PREFERENCE, NULL);
    sb_event_set (&sb_event_preference (e)->value, "Stop");
    s_expect (rules, e, SB_RULE_NONE, "stop", NULL);
    e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_CALL, NULL);
    sb_event_meta_call (e);
    sb_event_set (&e->call_status, "RINGING");
    s_expect (rules, e, SB_RULE_NONE, "ring", NULL);
    e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_ECHO, "hi");
    s_expect (rules, e, SB_RULE_NONE, "any-echo", NULL);
    e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_OTHER, NULL);
    s_expect (rules, e, SB_RULE_NONE, "any-echo", NULL);
    //  A message is none of these.
    e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "REJECTED");
    s_expect (rules, e, SB_RULE_NONE, NULL, NULL);
    sb_rules_destroy (&rules);
}

static void
s_test_example (void)
{
    char err[512];
    sb_rules_t *rules = sb_rules_load ("../examples/rules.yaml", err, sizeof (err));
    if (!rules) {
        fprintf (stderr, "%s:%d: examples/rules.yaml: %s\n", __FILE__, __LINE__, err);
        s_failures++;
        return;
    }
    CHECK (sb_rules_count (rules) == 6);

    //  The keyword menu, on SMS and WhatsApp, any case and spacing
    const char *menu = "Reply HOURS for our opening hours, or ADDRESS for where to find us.";
    s_expect_sms (rules, "menu", SB_RULE_REPLY, "menu", menu);
    s_expect_sms (rules, " Options\n", SB_RULE_REPLY, "menu", menu);
    s_expect (rules, s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "MENU"),
              SB_RULE_REPLY, "menu", menu);
    s_expect_sms (rules, "HOURS", SB_RULE_REPLY, "hours",
                  "We are open Monday to Friday, 9:00 to 17:00.");
    s_expect_sms (rules, "address", SB_RULE_REPLY, "address",
                  "Find us at 1 Main Street, Springfield.");

    //  The echo for everything else
    sb_event_t *event =
        s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "Hello there");
    sb_event_set (&event->profile_name, "Ana");
    s_expect (rules, event, SB_RULE_REPLY, "echo",
              "Thanks for your message! We received: Hello there");
    s_expect_sms (rules, "what is the menu?", SB_RULE_REPLY, "echo",
                  "Thanks for your message! We received: what is the menu?");
    s_expect_sms (rules, "bot hi", SB_RULE_REPLY, "echo",
                  "Thanks for your message! We received: bot hi");

    //  The verification code: six digits gathered on a call, published, no reply
    sb_rule_decision_t decision;
    event = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, NULL);
    sb_event_set (&event->digits, "482913");
    CHECK (sb_rules_decide (rules, event, &decision) == 0);
    CHECK (decision.action == SB_RULE_NONE);
    CHECK_STR (decision.rule, "verification-code");
    CHECK (decision.publish);
    CHECK (decision.text == NULL);
    sb_rule_decision_clear (&decision);
    sb_event_destroy (&event);
    //  not six digits: no rule at all (the echo answers messages only)
    event = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, NULL);
    sb_event_set (&event->digits, "48291");
    s_expect (rules, event, SB_RULE_NONE, NULL, NULL);
    event = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, NULL);
    sb_event_set (&event->digits, "4829130");
    s_expect (rules, event, SB_RULE_NONE, NULL, NULL);
    //  six digits in a text message are just echoed
    s_expect_sms (rules, "482913", SB_RULE_REPLY, "echo",
                  "Thanks for your message! We received: 482913");

    //  A template Meta rejected: published, no reply; approved: nothing.
    for (int i = 0; i < 2; i++) {
        event = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_TEMPLATE, NULL);
        sb_event_set (&sb_event_meta_template (event)->event, i ? "APPROVED" : "REJECTED");
        CHECK (sb_rules_decide (rules, event, &decision) == 0);
        CHECK (decision.action == SB_RULE_NONE);
        if (i)
            CHECK (decision.rule == NULL && !decision.publish);
        else {
            CHECK_STR (decision.rule, "template-rejected");
            CHECK (decision.publish);
        }
        sb_rule_decision_clear (&decision);
        sb_event_destroy (&event);
    }
    //  An echo, with a text that every message rule would answer: no rule.
    event = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_ECHO, "menu");
    s_expect (rules, event, SB_RULE_NONE, NULL, NULL);

    //  Statuses and calls: nothing
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_SMS, SB_KIND_STATUS, NULL),
              SB_RULE_NONE, NULL, NULL);
    s_expect (rules, s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_CALL, NULL),
              SB_RULE_NONE, NULL, NULL);

    //  Opt-out and opt-in keywords as listed
    CHECK (sb_rules_is_opt_out (rules, "stop"));
    CHECK (sb_rules_is_opt_out (rules, " UNSUBSCRIBE "));
    CHECK (sb_rules_is_opt_in (rules, "Start"));
    CHECK (sb_rules_is_opt_in (rules, "yes"));
    sb_rules_destroy (&rules);
}

int
main (void)
{
    s_test_text_matches ();
    s_test_filters ();
    s_test_gather_text ();
    s_test_first_match_wins ();
    s_test_actions ();
    s_test_templates ();
    s_test_opt_out ();
    s_test_load_errors ();
    s_test_hostile ();
    s_test_files ();
    s_test_example ();
    s_test_meta_kinds ();
    if (s_failures) {
        fprintf (stderr, "test_sb_rules: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
