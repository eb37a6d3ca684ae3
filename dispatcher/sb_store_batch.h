/*  sb_store_batch: what the files of the store's batch write share, and
    nothing else may use (the store's other files share
    sb_store_internal.h). The batch write (sb_store_write) is four files:
      sb_store.c           the batch: its rows, the two round trips, the
                           rules' decisions, the cursor
      sb_store_write_sql.c its statements: their SQL and parameter types
      sb_store_identity.c  contact identities: links, merges, moves, rows
      sb_store_meta.c      Meta's other fields: echoes, preferences
    They share the batch (one write's events, contacts and the parameter
    tables of its statements), the statements' columns, and the helpers
    declared here.
*/
#ifndef SB_STORE_BATCH_H_INCLUDED
#define SB_STORE_BATCH_H_INCLUDED

#include "sb_store_internal.h"

//  ---------------------------------------------------------------------
//  The columns of the write statements (sb_store_write_sql.c), in the
//  order of their parameters; *_COLS counts them.

//  sb_events
enum {
    EV_INGRESS,
    EV_EPOCH,
    EV_SEQ,
    EV_UID,
    EV_PROVIDER,
    EV_CHANNEL,
    EV_KIND,
    EV_TYPE,
    EV_PROVIDER_ID,
    EV_STATUS,
    EV_DEDUP,
    EV_ERROR_CODE,
    EV_FROM,
    EV_TO,
    EV_ACCOUNT,
    EV_TEXT,
    EV_RECEIVED,
    EV_PAYLOAD,
    EV_BODY_SHA256,
    EV_COLS
};
//  sb_bodies
enum { BO_SHA256, BO_TYPE, BO_BODY, BO_COLS };
//  sb_bodies_get
enum { BG_SHA256, BG_COLS };
//  sb_contacts_lock
enum { CK_PROVIDER, CK_CHANNEL, CK_ADDRESS, CK_COLS };
//  sb_moves
enum { MV_PROVIDER, MV_CHANNEL, MV_OLD, MV_NEW, MV_FORGET, MV_COLS };
//  sb_identities
enum { ID_PROVIDER, ID_CHANNEL, ID_IDENTITY, ID_ADDRESS, ID_COLS };
//  sb_contacts
enum { CO_PROVIDER, CO_CHANNEL, CO_ADDRESS, CO_PROFILE, CO_LAST_INBOUND, CO_OPTED_OUT, CO_COLS };
//  sb_messages
enum {
    MI_PROVIDER,
    MI_CHANNEL,
    MI_PROVIDER_ID,
    MI_CONTACT,
    MI_OURS,
    MI_ACCOUNT,
    MI_TYPE,
    MI_BODY,
    MI_EVENT_ID,
    MI_COLS
};
//  sb_outbox
enum {
    OB_KIND,
    OB_STATE,
    OB_PROVIDER,
    OB_CHANNEL,
    OB_ACCOUNT,
    OB_FROM,
    OB_TO,
    OB_BODY,
    OB_CONTEXT,
    OB_URL,
    OB_TIMEOUT,
    OB_JSON,
    OB_REASON,
    OB_EVENT_ID,
    OB_RULE,
    OB_CONTACT,
    OB_CONV,
    OB_PART,
    OB_COLS
};
//  sb_status
enum { ST_PROVIDER, ST_PROVIDER_ID, ST_STATUS, ST_ERROR_CODE, ST_COLS };
//  sb_echoes
enum {
    EC_PROVIDER,
    EC_CHANNEL,
    EC_PROVIDER_ID,
    EC_CONTACT,
    EC_OURS,
    EC_ACCOUNT,
    EC_TYPE,
    EC_BODY,
    EC_EVENT_ID,
    EC_COLS
};
//  sb_prefs
enum { PR_PROVIDER, PR_CHANNEL, PR_ADDRESS, PR_VALUE, PR_AT, PR_COLS };
//  sb_cursor
enum { CU_INGRESS, CU_EPOCH, CU_SEQ, CU_INSTANCE, CU_PARTS, CU_COLS };
//  sb_captures
enum { CA_EVENT_ID, CA_RULE, CA_CAPTURED, CA_COLS };

//  ---------------------------------------------------------------------
//  The batch

//  A contact the batch's inbound events come from.
typedef struct {
    const char *provider;      //  provider name (static)
    const char *channel;       //  channel name (static)
    const char *key;           //  the identity it was looked up by (borrowed from its item)
    const char *address;       //  the contact's address, as the batch leaves it (borrowed)
    const char *profile_name;  //  last non-empty profile name of the batch (borrowed)
    int64_t last_inbound_ms;   //  before the batch, then with the batch's events (0 = never)
    bool opted_out;            //  before the batch, then with the batch's events
    bool touched;              //  a new event of the batch changed it
    bool recorded;             //  a marketing preference of the batch makes it a contact
    size_t rep;                //  the entry that stands for its contact (itself, or merged away)
    char *stored;              //  the contact's address in contacts, when it is one (owned)
    char *stored_name;         //  its profile name there, when it is one (owned)
} sb_store_contact_t;

//  An identifier a change of number or id took from a contact: later
//  events of the batch that name it are from a new contact (reborn), as
//  they would be in a later batch.
typedef struct {
    const char *provider;  //  provider name (static)
    const char *channel;   //  channel name (static)
    const char *key;       //  the identifier (borrowed)
    size_t at;             //  the index of the event that changed it
    size_t reborn;         //  the contact entry of its later events, or SIZE_MAX
} sb_store_forgot_t;

//  One event of the batch.
typedef struct {
    bool fresh;        //  inserted now (not a duplicate)
    int64_t id;        //  events.id when fresh
    size_t contact;    //  index in contacts, or SIZE_MAX
    char *address;     //  inbound: the sender as stored (valid UTF-8, at most SB_STORE_KEY_MAX)
    char *user_id;     //  inbound: its BSUID when not its address, as stored (or NULL)
    size_t user;       //  index in contacts of user_id, or SIZE_MAX
    bool unknown;      //  a change of number or id for no contact: changed nothing
    bool has_body;     //  its request had a raw body: body_sha256 is its hash
    bool inline_body;  //  a request of one event: its body stays in the payload
    uint8_t body_sha256[SB_EVENT_SHA256_SIZE];  //  request_bodies key
} sb_store_item_t;

//  A raw body fetched from request_bodies (s_bodies_get_sql).
typedef struct {
    uint8_t sha256[SB_EVENT_SHA256_SIZE];  //  its key
    ProtobufCBinaryData body;              //  PQunescapeBytea's (PQfreemem)
    char *content_type;                    //  the request's Content-Type (strdup)
} sb_store_body_t;

//  An ingress's cursor as the batch leaves it.
typedef struct {
    const char *ingress_id;  //  borrowed
    const char *epoch;       //  borrowed
    uint64_t seq;            //  highest seq of that epoch in the batch
} sb_store_batch_cursor_t;

//  One sb_store_write: its events, what the batch learns of them, and the
//  parameter tables of its statements.
typedef struct {
    sb_event_t *const *events;         //  the caller's events
    size_t count;                      //  how many
    sb_store_item_t *items;            //  one per event
    sb_store_contact_t *contacts;      //  sorted by key, unique; then the reborn ones
    size_t ncontacts;                  //  how many
    size_t nsorted;                    //  how many of them are sorted (sb_store_contact_find)
    sb_store_forgot_t *forgot;         //  identifiers changes took, in batch order
    size_t nforgot;                    //  how many
    sb_store_batch_cursor_t *cursors;  //  one per ingress
    size_t ncursors;                   //  how many
    const bool *skip;                  //  per event, or NULL: another dispatcher's partition
    size_t skipped;                    //  how many skipped
    char parts[SB_PARTITIONS + 1];     //  the cursor's partitions, '0'/'1' each
    const char *instance;              //  the store instance writing the cursor
    sb_pgarray_table_t events_t;       //  events insert
    sb_pgarray_table_t keys_t;         //  contacts lock
    sb_pgarray_table_t contacts_t;     //  contacts upsert
    sb_pgarray_table_t messages_t;     //  inbound messages
    sb_pgarray_table_t outbox_t;       //  outbox rows
    size_t *outbox_contact;            //  per outbox row: its contact's entry, or SIZE_MAX
    size_t *outbox_event;              //  per outbox row: the event (index) that decided it
    size_t noutbox;                    //  how many rows
    sb_pgarray_table_t status_t;       //  statuses
    sb_pgarray_table_t cursor_t;       //  cursors
    sb_pgarray_table_t bodies_t;       //  request bodies insert
    sb_pgarray_table_t bodies_get_t;   //  request bodies to fetch for forwards
    sb_pgarray_table_t echoes_t;       //  Meta echoes: outbound messages
    sb_pgarray_table_t prefs_t;        //  Meta marketing preferences
    sb_pgarray_table_t moves_t;        //  contact moves and merges
    sb_pgarray_table_t identities_t;   //  contact identities
    sb_pgarray_table_t captures_t;     //  what publish rules captured (0012)
    char **owned;                      //  addresses the batch made (moves), freed with it
    size_t nowned;                     //  how many
    bool forwards;                     //  the rules may forward: fetch missing bodies
    sb_store_body_t *fetched;          //  what that fetch found
    size_t nfetched;                   //  how many
} sb_store_batch_t;

//  ---------------------------------------------------------------------
//  Small helpers

//  An indexed text element (see SB_STORE_KEY_MAX).
static inline void
s_array_key (sb_pgarray_t *a, const char *s)
{
    sb_pgarray_text_max (a, s, SB_STORE_KEY_MAX);
}

//  An indexed text element, NULL when s is NULL or empty.
static inline void
s_array_key_or_null (sb_pgarray_t *a, const char *s)
{
    if (s && *s)
        s_array_key (a, s);
    else
        sb_pgarray_null (a);
}

//  An inbound event: a message, gather or call (not Meta's) with a sender.
static inline bool
s_inbound (const sb_event_t *e)
{
    return (e->kind == SB_KIND_MESSAGE || e->kind == SB_KIND_GATHER
            || (e->kind == SB_KIND_CALL && e->provider != SB_PROVIDER_META))
           && e->from && *e->from;
}

//  A marketing preference (user_preferences) of a contact.
static inline bool
s_preference (const sb_event_t *e)
{
    //  A preference without a value (absent, or not a string) is kept as
    //  an event only: it must not erase the one recorded.
    return e->kind == SB_KIND_PREFERENCE && e->preference && e->from && *e->from
           && e->preference->value && *e->preference->value;
}

//  ---------------------------------------------------------------------
//  Shared functions

//  The statements' tables of batch b, each with its statement's
//  parameter types (sb_store_write_sql.c).
void sb_store_batch_tables (sb_store_batch_t *b);

//  Table t with the parameter types of the outbox statement (sb_outbox,
//  OB_COLS columns), for a row queued outside a batch: the console's
//  reply (sb_store_console.c).
void sb_store_outbox_table (sb_pgarray_table_t *t);

//  Batch b's contact entry of identity a (provider p, channel c) among the
//  sorted ones, or SIZE_MAX (sb_store.c).
size_t sb_store_contact_find (const sb_store_batch_t *b, const char *p, const char *c,
                              const char *a);

//  A rule's decision d for item asks to publish its match: record what it
//  captured (captures, 0012) and hand it to the caller (policy->captured,
//  taking d->captured) (sb_store.c).
void sb_store_capture (sb_store_batch_t *b, const sb_store_item_t *item,
                       const sb_store_policy_t *policy, sb_rule_decision_t *d);
//  Event i as a forward's JSON, with its request's raw body. Caller owns
//  the return value; NULL on failure (sb_store.c).
char *sb_store_forward_json (const sb_store_batch_t *b, size_t i);

//  Contact identities (sb_store_identity.c).

//  Before the lock query: a contact entry of event e's provider and
//  channel for identifier key (borrowed: the batch keeps it).
void sb_store_identity_entry (sb_store_batch_t *b, const sb_event_t *e, const char *key);

//  Before the lock query: an inbound event's user id, when it is not its
//  address, as an entry of its own. 0, or -1 out of memory.
int sb_store_identity_user_id (sb_store_batch_t *b, const sb_event_t *e, sb_store_item_t *item);

//  Before the lock query: identifier id of event e as an entry of its
//  own. 0, or -1 out of memory.
int sb_store_identity_key (sb_store_batch_t *b, const sb_event_t *e, const char *id);

//  After the lock query: entries naming one stored contact are one. 0.
int sb_store_identity_group (sb_store_batch_t *b);

//  The entry that stands for entry k's contact.
size_t sb_store_identity_find (const sb_store_batch_t *b, size_t k);

//  The entry identifier entry k names for event i (a new contact's when
//  a change earlier in the batch took it); SIZE_MAX for SIZE_MAX.
size_t sb_store_identity_current (sb_store_batch_t *b, size_t k, size_t i);

//  The contact a new inbound event stands for, its sender and user id
//  made one. NULL when out of memory.
sb_store_contact_t *sb_store_identity_link (sb_store_batch_t *b, const sb_store_item_t *item);

//  A WhatsApp system message: a changed number or user id.
bool sb_store_identity_change (const sb_event_t *e);

//  Event i, a change, moves contact entry k. 0, or -1 out of memory.
int sb_store_identity_move (sb_store_batch_t *b, sb_store_item_t *item, size_t i, size_t k);

//  Queue the identity rows of the batch's new inbound events.
void sb_store_identity_rows (sb_store_batch_t *b);

//  Meta's other fields (sb_store_meta.c).

//  An event of kind and provider is one of Meta's other fields.
bool sb_store_meta_field (int kind, int provider);

//  Queue the effect of such a new event (its echo row, its preference's
//  contact, a forward the rules ask for). 0, or -1.
int sb_store_meta_effect (sb_store_batch_t *b, const sb_event_t *e, sb_store_item_t *item,
                          const sb_store_policy_t *policy, sb_store_stats_t *stats);

//  Queue the batch's marketing preferences, at the end of the batch.
void sb_store_meta_prefs (sb_store_batch_t *b);

#endif
