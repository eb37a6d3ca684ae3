/*  sb_outbox: freeing the plain data that sb_store and sb_sender exchange.
    Both structs own all their strings; these free them and leave the
    pointers NULL, so freeing twice is harmless. The struct itself belongs
    to the caller (it usually lives on the stack or in an array).
*/
#include "sb_outbox.h"

#include <stdlib.h>

void
sb_outbox_item_free (sb_outbox_item_t *item)
{
    if (!item)
        return;
    char **strings[] = {&item->account,    &item->from,        &item->to,        &item->body,
                        &item->context_id, &item->forward_url, &item->event_json};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        free (*strings[i]);
        *strings[i] = NULL;
    }
}

void
sb_outbox_result_free (sb_send_result_t *result)
{
    if (!result)
        return;
    char **strings[] = {&result->provider_id, &result->bot_text, &result->error_code,
                        &result->error};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        free (*strings[i]);
        *strings[i] = NULL;
    }
}
