/*  sb_store_meta: the effects of a new event of Meta's other webhook
    fields (0006_meta_fields.sql) in the batch write (sb_store.c,
    sb_store_batch.h): the kinds that are no inbound message of a contact.
    An echo (message_echoes, smb_message_echoes) becomes an outbound
    messages row with origin 'echo'; an id already held (our own send,
    answered before its echo came) inserts nothing; the rules are never
    asked about it: it is ours. A marketing preference (user_preferences)
    is recorded on its contact under the address the batch leaves it at (a
    change later in the batch takes it along, as written one by one), the
    newest by Meta's timestamp winning; one without a value is an event
    only. Of the other events (preferences, templates, the account, Meta's
    calls, the rest) the rules may ask a forward or a publish, never a
    reply: these events have no one to answer. The statements (s_echoes_sql,
    s_prefs_sql) are in sb_store_write_sql.c.
*/
#include "sb_store_batch.h"

#include <stdlib.h>

#include "sb_time.h"

#define S_MODULE "store"

//  Meta's other webhook fields (0006_meta_fields.sql): the kinds that are
//  no inbound message of a contact.
bool
sb_store_meta_field (int kind, int provider)
{
    return kind == SB_KIND_ECHO || kind == SB_KIND_PREFERENCE || kind == SB_KIND_TEMPLATE
           || kind == SB_KIND_ACCOUNT || kind == SB_KIND_OTHER
           || (kind == SB_KIND_CALL && provider == SB_PROVIDER_META);
}

//  The effect of a new event of Meta's other fields: an echo is an
//  outbound message (never asked about: it is ours); a preference is
//  recorded on its contact; then the rules may forward (a notification)
//  or publish, never reply: these events have no one to answer.
int
sb_store_meta_effect (sb_store_batch_t *b, const sb_event_t *e, sb_store_item_t *item,
                      const sb_store_policy_t *policy, sb_store_stats_t *stats)
{
    const char *provider = sb_event_provider_name (e->provider);
    const char *channel = sb_event_channel_name (e->channel);
    if (e->kind == SB_KIND_ECHO) {
        sb_pgarray_table_t *t = &b->echoes_t;
        sb_pgarray_text (&t->cols[EC_PROVIDER], provider);
        sb_pgarray_text (&t->cols[EC_CHANNEL], channel);
        s_array_key_or_null (&t->cols[EC_PROVIDER_ID], e->provider_id);
        sb_pgarray_text (&t->cols[EC_CONTACT], e->to);
        sb_pgarray_text (&t->cols[EC_OURS], e->from);
        sb_pgarray_text (&t->cols[EC_ACCOUNT], e->account);
        sb_pgarray_text (&t->cols[EC_TYPE], e->message_type);
        sb_pgarray_text (&t->cols[EC_BODY], e->text);
        sb_pgarray_int8 (&t->cols[EC_EVENT_ID], item->id);
        return 0;
    }
    if (s_preference (e) && item->contact != SIZE_MAX) {
        //  Its row is written with the batch's end (sb_store_meta_prefs); its
        //  contact exists from now on, for a change later in the batch.
        item->contact = sb_store_identity_current (b, item->contact, (size_t) (item - b->items));
        b->contacts[sb_store_identity_find (b, item->contact)].recorded = true;
    }
    const sb_rules_t *rules = policy ? policy->rules : NULL;
    if (!rules)
        return 0;
    sb_rule_decision_t d = {.action = SB_RULE_NONE};
    if (sb_rules_decide (rules, e, &d) != 0)
        return -1;
    if (d.publish)
        sb_store_capture (b, item, policy, &d);
    if (d.action == SB_RULE_REPLY)
        sb_debug (S_MODULE, "reply not queued: nobody to answer rule=%s kind=%s", s_str (d.rule),
                  sb_event_kind_name (e->kind));
    if (d.action == SB_RULE_FORWARD) {
        char *json = sb_store_forward_json (b, (size_t) (item - b->items));
        if (!json) {
            sb_rule_decision_clear (&d);
            return -1;
        }
        sb_pgarray_table_t *t = &b->outbox_t;
        sb_pgarray_text (&t->cols[OB_KIND], "forward");
        sb_pgarray_text (&t->cols[OB_STATE], "pending");
        sb_pgarray_text (&t->cols[OB_PROVIDER], provider);
        sb_pgarray_text (&t->cols[OB_CHANNEL], channel);
        sb_pgarray_text (&t->cols[OB_ACCOUNT], e->account);
        sb_pgarray_text (&t->cols[OB_FROM], e->to);
        sb_pgarray_text (&t->cols[OB_TO], "");
        sb_pgarray_text (&t->cols[OB_BODY], "");
        sb_pgarray_text (&t->cols[OB_CONTEXT], "");
        sb_pgarray_text (&t->cols[OB_URL], d.url);
        sb_pgarray_int4 (&t->cols[OB_TIMEOUT], d.timeout_ms);
        sb_pgarray_text (&t->cols[OB_JSON], json);
        sb_pgarray_text (&t->cols[OB_REASON], "");
        sb_pgarray_int8 (&t->cols[OB_EVENT_ID], item->id);
        sb_pgarray_text (&t->cols[OB_RULE], d.rule);
        b->outbox_event[b->noutbox] = (size_t) (item - b->items);
        b->outbox_contact[b->noutbox++] = SIZE_MAX;
        free (json);
        stats->replies++;
    }
    sb_rule_decision_clear (&d);
    return 0;
}

//  The marketing preferences of the batch, each under its contact's
//  address as the batch leaves it (a change later in the batch takes the
//  preference with it, as it would written one by one).
void
sb_store_meta_prefs (sb_store_batch_t *b)
{
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        const sb_store_item_t *item = &b->items[i];
        if (!item->fresh || !s_preference (e) || item->contact == SIZE_MAX)
            continue;
        const sb_store_contact_t *c = &b->contacts[sb_store_identity_find (b, item->contact)];
        sb_pgarray_table_t *t = &b->prefs_t;
        int64_t at = e->provider_timestamp > 0
                         ? e->provider_timestamp * 1000
                         : (e->received_at_ms ? e->received_at_ms : sb_time_wall_ms ());
        sb_pgarray_text (&t->cols[PR_PROVIDER], c->provider);
        sb_pgarray_text (&t->cols[PR_CHANNEL], c->channel);
        s_array_key (&t->cols[PR_ADDRESS], c->address);
        sb_pgarray_text (&t->cols[PR_VALUE], e->preference->value);
        sb_pgarray_time (&t->cols[PR_AT], at);
    }
}
