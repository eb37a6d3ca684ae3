/*  sb_rules: the reply rules, loaded from a YAML file (SB_RULES) with
    libyaml, and matched against inbound events. The first match wins.

    A rule matches on provider, channel, kind and text (exact,
    case-insensitive keyword, prefix, POSIX extended regex, or any); its
    action replies with a template ({profile_name}, {text}, {from}, {to},
    {digits}), forwards the event to a bot URL, or does nothing. The file
    also names the opt-out and opt-in keywords. See examples/rules.yaml.
*/
#ifndef SB_RULES_H_INCLUDED
#define SB_RULES_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "sb_event.h"

typedef struct sb_rules_t sb_rules_t;

typedef enum {
    SB_RULE_NONE = 0,  //  no rule matched, or the rule says do nothing
    SB_RULE_REPLY,     //  reply with text
    SB_RULE_FORWARD,   //  forward to a bot, reply with its answer
} sb_rule_action_t;

typedef struct {
    sb_rule_action_t action;
    const char *rule;  //  the matching rule's name (borrowed from rules), NULL if none
    char *text;        //  REPLY: the rendered template (caller frees)
    const char *url;   //  FORWARD: the bot's URL (borrowed)
    int timeout_ms;    //  FORWARD: timeout
    bool publish;      //  the rule asks to publish the match (e.g. a verification code)
    char *captured;    //  publish: what it matched, the part a regex found or the whole
                       //  text, digits for a gather (caller frees; at most 256 bytes)
} sb_rule_decision_t;

//  Load and check the file. NULL on error with "path:line: problem" in err.
//  Caller owns the return value.
sb_rules_t *sb_rules_load (const char *path, char *err, size_t err_size);

void sb_rules_destroy (sb_rules_t **self_p);

//  The decision for an event. 0, or -1 when out of memory.
int sb_rules_decide (const sb_rules_t *self, const sb_event_t *event, sb_rule_decision_t *out);

void sb_rule_decision_clear (sb_rule_decision_t *decision);

//  The event's text is an opt-out keyword (STOP, UNSUBSCRIBE, ...), or an
//  opt-in keyword (START, ...): trimmed, case-insensitive, whole text.
bool sb_rules_is_opt_out (const sb_rules_t *self, const char *text);
bool sb_rules_is_opt_in (const sb_rules_t *self, const char *text);

//  Number of rules loaded.
size_t sb_rules_count (const sb_rules_t *self);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them.

//  Rules from a YAML string (the tests' rules need no file); name is used
//  in error messages.
sb_rules_t *sb_rules_load_string (const char *yaml, const char *name, char *err, size_t err_size);

#endif
