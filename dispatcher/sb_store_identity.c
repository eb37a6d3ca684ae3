/*  sb_store_identity: contact identities in the batch write (sb_store.c,
    sb_store_batch.h): which contact each new event of the batch stands
    for, and the moves, merges and identity rows that makes.

    Identities (0005_contact_identities.sql). A contact is found by any
    identifier it was seen with: its phone number, its business-scoped
    user id (BSUID), its parent BSUID (contact_identities). Round trip 1
    locks the contacts the batch's senders and their user ids name
    (s_contacts_lock_sql by identity); sb_store_identity_link then makes the
    ids of one event one contact: a sender's phone and BSUID already two
    contacts merge into the phone's, a known BSUID seen first with a phone
    moves to the phone (Meta asks businesses to send to phone numbers when
    they have them). A change-of-number or change-of-id system message
    moves the contact, with its messages, opt-out and window, to the new
    number (to a new BSUID only when it had no number) and forgets the old
    identifier and the previous BSUID it came by; one about no contact
    changes nothing. A batch gives what its events one by one would: a
    later event from a forgotten identifier is a new contact
    (sb_store_identity_current), and messages (a reply's outbound row too)
    and marketing preferences go under the address the batch leaves their
    contact at. Round trip 2 runs the moves first (sb_contact_moves, in
    batch order), then the upserts, then the identity rows
    (s_identities_sql, at most SB_STORE_IDENTITIES_MAX per contact, counted
    within the batch too; the rest are dropped). A reply goes to the
    contact's address: a phone number or a BSUID, which the sender puts in
    "recipient" (sb_sender). The statements are in sb_store_write_sql.c.

    DESIGN (moves never lose an opt-out). The contacts upsert writes the
    opt-out the C side computed (it must: an opt-in keyword clears it), so
    the C side must know the state of every contact a move merges: round
    trip 1 also locks and loads the contacts a change's new number and new
    BSUID name (s_batch_prepare, sb_store_identity_key), and the change
    merges them into the moving contact in C (s_identity_adopt: opted out
    if either was, the later window) as sb_contact_moves merges their rows;
    a contact its new BSUID named under another address is moved onto it.
    Later events of the batch by those identifiers are that contact, opted
    out or not as it is after the merge. Making the upsert OR the opt-outs
    instead would keep the flag but still decide the batch's replies on a
    state that lacks it. The marketing preference, which C does not track,
    is merged in SQL (0007_contact_moves_merge.sql: the newer by Meta's
    time).

    Limits. A batch has at most six contact entries per event (a sender,
    its user id, a change's two new identifiers, two reborn contacts),
    allocated by s_batch_prepare.
*/
#include "sb_store_batch.h"

#include <stdlib.h>
#include <string.h>

#include "sb_bsuid.h"

#define S_MODULE "store"

//  An owned string the batch keeps until it is freed; NULL when out of
//  memory (the string is then freed).
static char *
s_batch_own (sb_store_batch_t *b, char *text)
{
    if (!text)
        return NULL;
    char **owned = realloc (b->owned, (b->nowned + 1) * sizeof *owned);
    if (!owned) {
        free (text);
        return NULL;
    }
    b->owned = owned;
    return b->owned[b->nowned++] = text;
}

//  A contact entry of event e's provider and channel for identifier key
//  (borrowed: the batch keeps it).
void
sb_store_identity_entry (sb_store_batch_t *b, const sb_event_t *e, const char *key)
{
    sb_store_contact_t *c = &b->contacts[b->ncontacts++];
    c->provider = sb_event_provider_name (e->provider);
    c->channel = sb_event_channel_name (e->channel);
    c->key = c->address = key;
}

//  An inbound event's user id (else parent user id), when it is not its
//  address, as a contact entry of its own. 0, or -1 out of memory.
int
sb_store_identity_user_id (sb_store_batch_t *b, const sb_event_t *e, sb_store_item_t *item)
{
    const char *id = e->user_id && *e->user_id ? e->user_id : e->parent_user_id;
    if (!id || !*id || strcmp (id, e->from) == 0)
        return 0;
    if (!(item->user_id = sb_store_utf8_dup (id, SB_STORE_KEY_MAX)))
        return -1;
    if (strcmp (item->user_id, item->address) == 0) {
        free (item->user_id);
        item->user_id = NULL;
        return 0;
    }
    sb_store_identity_entry (b, e, item->user_id);
    return 0;
}

//  Identifier id (not NULL, not empty) of event e as a contact entry of
//  its own, to lock and load in round trip 1. 0, or -1 out of memory.
int
sb_store_identity_key (sb_store_batch_t *b, const sb_event_t *e, const char *id)
{
    char *key = s_batch_own (b, sb_store_utf8_dup (id, SB_STORE_KEY_MAX));
    if (!key)
        return -1;
    sb_store_identity_entry (b, e, key);
    return 0;
}

size_t
sb_store_identity_find (const sb_store_batch_t *b, size_t k)
{
    while (b->contacts[k].rep != k)
        k = b->contacts[k].rep;
    return k;
}

//  After the lock query: an entry of a stored contact stands for it by
//  its stored address, and entries naming one stored contact are one.
//  0 (never fails).
int
sb_store_identity_group (sb_store_batch_t *b)
{
    for (size_t k = 0; k < b->ncontacts; k++) {
        sb_store_contact_t *c = &b->contacts[k];
        if (!c->stored)
            continue;
        c->address = c->stored;
        for (size_t j = 0; j < k; j++) {
            const sb_store_contact_t *o = &b->contacts[j];
            if (o->stored && strcmp (o->provider, c->provider) == 0
                && strcmp (o->channel, c->channel) == 0 && strcmp (o->stored, c->stored) == 0) {
                c->rep = sb_store_identity_find (b, j);
                break;
            }
        }
    }
    return 0;
}

//  Queue a move (or merge) of the stored contact old to new.
static void
s_identity_queue_move (sb_store_batch_t *b, const sb_store_contact_t *c, const char *old,
                       const char *new, bool forget)
{
    sb_pgarray_table_t *t = &b->moves_t;
    sb_pgarray_text (&t->cols[MV_PROVIDER], c->provider);
    sb_pgarray_text (&t->cols[MV_CHANNEL], c->channel);
    s_array_key (&t->cols[MV_OLD], old);
    s_array_key (&t->cols[MV_NEW], new);
    sb_pgarray_bool (&t->cols[MV_FORGET], forget);
    sb_info (S_MODULE, "contact moved provider=%s channel=%s reason=%s", c->provider, c->channel,
             forget ? "identifier_changed" : "identities_merged");
}

//  The profile name contact c has at this point of the batch: the batch's,
//  else the stored one; NULL when it has none.
static const char *
s_identity_name (const sb_store_contact_t *c)
{
    if (c->profile_name)
        return c->profile_name;
    return c->stored_name && *c->stored_name ? c->stored_name : NULL;
}

//  Entry u's contact becomes part of entry f's: opted out if either was,
//  the later window, f's profile name, else u's (as sb_contact_moves
//  merges them).
static void
s_identity_absorb (sb_store_batch_t *b, size_t f, size_t u)
{
    sb_store_contact_t *cf = &b->contacts[f];
    const sb_store_contact_t *cu = &b->contacts[u];
    cf->opted_out = cf->opted_out || cu->opted_out;
    if (cu->last_inbound_ms > cf->last_inbound_ms)
        cf->last_inbound_ms = cu->last_inbound_ms;
    cf->profile_name = s_identity_name (cf) ? s_identity_name (cf) : s_identity_name (cu);
    cf->touched = cf->touched || cu->touched;
    cf->recorded = cf->recorded || cu->recorded;
    b->contacts[u].rep = f;
}

//  The latest change at or before event `at` that took key, or NULL.
static sb_store_forgot_t *
s_identity_forgot (sb_store_batch_t *b, const char *provider, const char *channel, const char *key,
                   size_t at)
{
    for (size_t n = b->nforgot; n-- > 0;) {
        sb_store_forgot_t *f = &b->forgot[n];
        if (f->at <= at && strcmp (f->key, key) == 0 && strcmp (f->provider, provider) == 0
            && strcmp (f->channel, channel) == 0)
            return f;
    }
    return NULL;
}

//  The entry key names for event i: its own (sorted) entry k, unless a
//  change earlier in the batch took key from its contact: then a new
//  contact's (made at first need).
size_t
sb_store_identity_current (sb_store_batch_t *b, size_t k, size_t i)
{
    if (k == SIZE_MAX)
        return k;
    const sb_store_contact_t *c = &b->contacts[k];
    sb_store_forgot_t *f = s_identity_forgot (b, c->provider, c->channel, c->key, i);
    if (!f || f->at == i)
        return k;
    if (f->reborn == SIZE_MAX) {
        f->reborn = b->ncontacts++;
        b->contacts[f->reborn] = (sb_store_contact_t){.provider = c->provider,
                                                      .channel = c->channel,
                                                      .key = f->key,
                                                      .address = f->key,
                                                      .rep = f->reborn};
    }
    return f->reborn;
}

//  The contact a new inbound event stands for, its sender and user id
//  made one: a phone number and a BSUID of the same person are one
//  contact, kept under the phone number. NULL when out of memory.
sb_store_contact_t *
sb_store_identity_link (sb_store_batch_t *b, const sb_store_item_t *item)
{
    size_t f = sb_store_identity_find (b, item->contact);
    sb_store_contact_t *cf = &b->contacts[f];
    if (item->user == SIZE_MAX)
        return cf;
    size_t u = sb_store_identity_find (b, item->user);
    if (u == f)
        return cf;
    sb_store_contact_t *cu = &b->contacts[u];
    if (cu->stored && !cf->stored && sb_bsuid_like (cf->address)) {
        cf->rep = u;  //  a BSUID sender of a known user id: that contact
        return cu;
    }
    if (cu->stored) {
        //  The user id's contact moves to the sender (a merge when the
        //  sender is a contact too), with its opt-out and window.
        if (!cf->stored && !(cf->stored = strdup (cf->address)))
            return NULL;
        s_identity_queue_move (b, cf, cu->address, cf->address, false);
    }
    s_identity_absorb (b, f, u);
    return cf;
}

//  A system message of WhatsApp's (a changed number or user id, a changed
//  identity): a notice about the user, not a message from them.
bool
sb_store_identity_change (const sb_event_t *e)
{
    return e->provider == SB_PROVIDER_META && e->kind == SB_KIND_MESSAGE && e->message_type
           && strcmp (e->message_type, "system") == 0;
}

//  Contact c no longer has identifier key after event i.
static void
s_identity_take (sb_store_batch_t *b, const sb_store_contact_t *c, const char *key, size_t i)
{
    b->forgot[b->nforgot++] = (sb_store_forgot_t){
        .provider = c->provider, .channel = c->channel, .key = key, .at = i, .reborn = SIZE_MAX};
}

//  After event i, a change that moved contact k (or gave it a new BSUID):
//  the contact identifier id named, locked in round trip 1 with its state,
//  is contact k from now on (as the identity row the change writes makes
//  it): merged, in C and in SQL. Merged into k's new row by the move
//  itself when it is that row (its profile name then wins, as
//  sb_contact_moves keeps it), else moved onto it. 0, or -1 out of memory.
static int
s_identity_adopt (sb_store_batch_t *b, size_t k, const char *id, size_t i)
{
    if (!id || !*id)
        return 0;
    sb_store_contact_t *c = &b->contacts[k];
    char *key = sb_store_utf8_dup (id, SB_STORE_KEY_MAX);
    if (!key)
        return -1;
    size_t x = sb_store_contact_find (b, c->provider, c->channel, key);
    free (key);
    x = x == SIZE_MAX ? x : sb_store_identity_find (b, sb_store_identity_current (b, x, i + 1));
    if (x == SIZE_MAX || x == k)
        return 0;
    const sb_store_contact_t *o = &b->contacts[x];
    if (o->stored && strcmp (o->address, c->address) == 0) {
        const char *name = s_identity_name (o) ? s_identity_name (o) : s_identity_name (c);
        s_identity_absorb (b, k, x);
        c->profile_name = name;
        return 0;
    }
    if (o->stored)
        s_identity_queue_move (b, o, o->address, c->address, false);
    s_identity_absorb (b, k, x);
    return 0;
}

//  Event i, a changed number or user id, moves contact c (entry k) to the
//  new identifier: the new phone number when given, else the new BSUID
//  when c is known by a BSUID (a contact known by its phone number keeps
//  it). The previous BSUID, when the event came by it, stops naming c.
//  Nothing when c is no contact yet. 0, or -1 out of memory.
int
sb_store_identity_move (sb_store_batch_t *b, sb_store_item_t *item, size_t i, size_t k)
{
    const sb_event_t *e = b->events[i];
    sb_store_contact_t *c = &b->contacts[k];
    if (!c->stored && !c->touched && !c->recorded) {
        item->unknown = true;
        return 0;
    }
    const char *wa_id = e->system ? e->system->new_wa_id : NULL;
    const char *to = wa_id && *wa_id ? wa_id : sb_bsuid_like (c->address) ? e->new_user_id : NULL;
    const char *old = c->address;
    if (to && *to) {
        char *address = s_batch_own (b, sb_store_utf8_dup (to, SB_STORE_KEY_MAX));
        if (!address)
            return -1;
        if (strcmp (address, old) != 0) {
            s_identity_queue_move (b, c, old, address, true);
            s_identity_take (b, c, old, i);
            c->address = address;
        }
    }
    if (s_identity_adopt (b, k, to, i) != 0 || s_identity_adopt (b, k, e->new_user_id, i) != 0)
        return -1;
    const char *prev = e->previous_user_id;
    bool came_by = prev
                   && ((item->address && strcmp (prev, item->address) == 0)
                       || (item->user_id && strcmp (prev, item->user_id) == 0));
    if (came_by && strcmp (prev, old) != 0 && strcmp (prev, c->address) != 0) {
        s_identity_queue_move (b, c, prev, c->address, true);
        s_identity_take (b, c, prev, i);
    }
    return 0;
}

static void
s_identity_row (sb_store_batch_t *b, const sb_store_contact_t *c, const char *identity, size_t i)
{
    if (!identity || !*identity || strcmp (identity, c->address) == 0)
        return;
    const sb_store_forgot_t *f = NULL;
    for (size_t n = 0; n < b->nforgot && !f; n++)
        if (b->forgot[n].at >= i && strcmp (b->forgot[n].key, identity) == 0
            && strcmp (b->forgot[n].provider, c->provider) == 0
            && strcmp (b->forgot[n].channel, c->channel) == 0)
            f = &b->forgot[n];
    if (f)
        return;  //  a later event of the batch took it
    sb_pgarray_table_t *t = &b->identities_t;
    sb_pgarray_text (&t->cols[ID_PROVIDER], c->provider);
    sb_pgarray_text (&t->cols[ID_CHANNEL], c->channel);
    s_array_key (&t->cols[ID_IDENTITY], identity);
    s_array_key (&t->cols[ID_ADDRESS], c->address);
}

//  The identity rows of the batch's new inbound events, naming each
//  contact by its address as the batch leaves it; an identifier a later
//  change of the batch took is not written (the move forgot it).
void
sb_store_identity_rows (sb_store_batch_t *b)
{
    for (size_t i = 0; i < b->count; i++) {
        const sb_store_item_t *item = &b->items[i];
        const sb_event_t *e = b->events[i];
        if (!item->fresh || item->contact == SIZE_MAX || item->unknown || !s_inbound (e))
            continue;
        const sb_store_contact_t *c = &b->contacts[sb_store_identity_find (b, item->contact)];
        if (!sb_store_identity_change (e)) {
            //  The contact's own address: a row when it is new.
            sb_pgarray_table_t *t = &b->identities_t;
            sb_pgarray_text (&t->cols[ID_PROVIDER], c->provider);
            sb_pgarray_text (&t->cols[ID_CHANNEL], c->channel);
            s_array_key (&t->cols[ID_IDENTITY], c->address);
            s_array_key (&t->cols[ID_ADDRESS], c->address);
            s_identity_row (b, c, item->address, i);
            s_identity_row (b, c, item->user_id, i);
        }
        else
            s_identity_row (b, c, e->new_user_id, i);
    }
}
