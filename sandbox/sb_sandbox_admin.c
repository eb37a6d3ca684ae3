/*  sb_sandbox_admin: what the sandbox remembers and what it is told to do:
    the request log, the failure plan and their control endpoints.

        GET    /_sandbox/requests[?since=SEQ]  every request recorded, as JSON
        DELETE /_sandbox/requests              clear the record
        POST   /_sandbox/fail?...              plan failures (see --help)
        GET|DELETE /_sandbox/fail              show or clear the plan

    Every provider request is recorded, answer included, before it is
    answered, so whoever got the answer finds the record. A plan fails the
    next N requests, or a random share of them, with 500, 429 and
    Retry-After, a slow answer, Meta's 131047 (outside the 24-hour
    window) or Meta's 131056 (the pair rate limit).

    Limits: the log keeps about the last S_LOG_MAX requests (the oldest
    tenth goes when it is full); the caller cuts each body at 64 KiB.
*/
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sb_fakeprov.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_sandbox.h"

#define S_LOG_MAX 100000         //  requests kept in the log
#define S_DEFAULT_DELAY_MS 5000  //  slow answers, unless delay_ms says
#define S_MAX_DELAY_MS 600000    //  longest slow answer

static const char *s_fail_names[] = {"none",       "500",   "429",       "slow",
                                     "meta131047", "mixed", "meta131056"};

const char *
sb_sandbox_fail_name (sb_sandbox_fail_mode_t mode)
{
    return s_fail_names[mode];
}

//  A uniform random number in [0, 1).
static double
s_random_unit (void)
{
    uint32_t value = 0;
    sb_fakeprov_random (&value, sizeof value);
    return value / 4294967296.0;
}

//  --------------------------------------------------------------------------
//  Failure injection

sb_sandbox_fail_mode_t
sb_sandbox_take_failure (sb_sandbox_t *self, unsigned provider, long *retry_after_s, long *delay_ms)
{
    sb_sandbox_fail_mode_t mode = SB_SANDBOX_FAIL_NONE;
    pthread_mutex_lock (&self->lock);
    sb_sandbox_plan_t *plan = &self->plan;
    if (plan->providers & provider) {
        if (plan->count > 0) {
            mode = plan->mode;
            plan->count--;
        }
        else if (plan->rate > 0 && s_random_unit () < plan->rate) {
            mode = plan->rate_mode;
            if (mode == SB_SANDBOX_FAIL_MIXED)
                mode = s_random_unit () < 0.5 ? SB_SANDBOX_FAIL_500 : SB_SANDBOX_FAIL_429;
        }
    }
    *retry_after_s = plan->retry_after_s;
    *delay_ms = plan->delay_ms;
    pthread_mutex_unlock (&self->lock);
    if ((mode == SB_SANDBOX_FAIL_META131047 || mode == SB_SANDBOX_FAIL_META131056)
        && provider != SB_SANDBOX_META)
        mode = SB_SANDBOX_FAIL_NONE;  //  Twilio has no such answer
    return mode;
}

void
sb_sandbox_inject (unsigned provider, sb_sandbox_fail_mode_t mode, long retry_after_s,
                   sb_sandbox_answer_t *answer)
{
    answer->injected = sb_sandbox_fail_name (mode);
    if (mode == SB_SANDBOX_FAIL_500) {
        if (provider == SB_SANDBOX_TWILIO)
            sb_sandbox_twilio_error (answer, 500, 20500, "Internal Server Error");
        else
            sb_sandbox_meta_error (answer, 500, 131000, "(#131000) Something went wrong",
                                   "Something went wrong");
    }
    else if (mode == SB_SANDBOX_FAIL_429) {
        answer->retry_after_s = retry_after_s;
        if (provider == SB_SANDBOX_TWILIO)
            sb_sandbox_twilio_error (answer, 429, 20429, "Too Many Requests");
        else
            sb_sandbox_meta_error (answer, 429, 130429, "(#130429) Rate limit hit",
                                   "Cloud API message throughput has been reached.");
    }
    else if (mode == SB_SANDBOX_FAIL_META131047)
        sb_sandbox_meta_error (
            answer, 400, 131047, "(#131047) Re-engagement message",
            "Message failed to send because more than 24 hours have passed since "
            "the customer last replied to this number.");
    else if (mode == SB_SANDBOX_FAIL_META131056)
        //  Meta's error codes page: "(Business Account, Consumer Account)
        //  pair rate limit hit", with its details text.
        sb_sandbox_meta_error (answer, 400, 131056,
                               "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                               "Message failed to send because there were too many messages sent "
                               "from this phone number to the same phone number in a short period "
                               "of time.");
}

//  --------------------------------------------------------------------------
//  The request log and the control endpoints (/_sandbox/...)

void
sb_sandbox_log_append (sb_sandbox_t *self, json_t *record)
{
    pthread_mutex_lock (&self->lock);
    json_object_set_new (record, "seq", json_integer ((json_int_t) self->next_seq++));
    json_array_append_new (self->log, record);
    if (json_array_size (self->log) > S_LOG_MAX) {
        //  Drop the oldest tenth at once: removing one at a time from the
        //  front would move the whole array on every request.
        json_t *kept = json_array ();
        size_t size = json_array_size (self->log);
        for (size_t i = S_LOG_MAX / 10; kept && i < size; i++)
            json_array_append (kept, json_array_get (self->log, i));
        if (kept) {
            json_decref (self->log);
            self->log = kept;
        }
    }
    pthread_mutex_unlock (&self->lock);
}

static json_t *
s_plan_json (const sb_sandbox_plan_t *plan)
{
    return json_pack (
        "{s:s, s:I, s:s, s:f, s:s, s:I, s:I}", "mode", sb_sandbox_fail_name (plan->mode), "count",
        (json_int_t) plan->count, "rate_mode", sb_sandbox_fail_name (plan->rate_mode), "rate",
        plan->rate, "providers",
        plan->providers == (SB_SANDBOX_TWILIO | SB_SANDBOX_META) ? "all"
        : plan->providers == SB_SANDBOX_TWILIO                   ? "twilio"
                                                                 : "meta",
        "retry_after", (json_int_t) plan->retry_after_s, "delay_ms", (json_int_t) plan->delay_ms);
}

void
sb_sandbox_plan_reset (sb_sandbox_plan_t *plan)
{
    *plan = (sb_sandbox_plan_t){.providers = SB_SANDBOX_TWILIO | SB_SANDBOX_META,
                                .retry_after_s = 1,
                                .delay_ms = S_DEFAULT_DELAY_MS};
}

//  POST /_sandbox/fail?count=N&mode=M[&retry_after=S][&delay_ms=D][&rate=R][&provider=P]
static void
s_fail_set (sb_sandbox_t *self, const char *query, sb_sandbox_answer_t *answer)
{
    sb_form_t *form = sb_form_parse (query ? query : "", query ? strlen (query) : 0);
    sb_sandbox_plan_t plan;
    sb_sandbox_plan_reset (&plan);
    const char *problem = NULL;
    const char *mode_text = form ? sb_form_get (form, "mode") : NULL;
    const char *count = form ? sb_form_get (form, "count") : NULL;
    const char *rate = form ? sb_form_get (form, "rate") : NULL;
    const char *retry_after = form ? sb_form_get (form, "retry_after") : NULL;
    const char *delay = form ? sb_form_get (form, "delay_ms") : NULL;
    const char *provider = form ? sb_form_get (form, "provider") : NULL;
    sb_sandbox_fail_mode_t mode = SB_SANDBOX_FAIL_NONE;
    for (int m = SB_SANDBOX_FAIL_500; mode_text && m <= SB_SANDBOX_FAIL_META131056; m++)
        if (strcmp (mode_text, sb_sandbox_fail_name (m)) == 0)
            mode = (sb_sandbox_fail_mode_t) m;
    if (!form)
        problem = "malformed query";
    else if (mode == SB_SANDBOX_FAIL_NONE)
        problem = "mode must be 500, 429, slow, meta131047, meta131056 or mixed";
    else if (!count && !rate)
        problem = "give count=N or rate=R";
    else if (count && sb_sandbox_parse_long (count, 0, 1000000, &plan.count))
        problem = "count must be a whole number up to 1000000";
    else if (count && mode == SB_SANDBOX_FAIL_MIXED)
        problem = "mode=mixed goes with rate=R only";
    else if (retry_after && sb_sandbox_parse_long (retry_after, 0, 86400, &plan.retry_after_s))
        problem = "retry_after must be whole seconds up to 86400";
    else if (delay && sb_sandbox_parse_long (delay, 0, S_MAX_DELAY_MS, &plan.delay_ms))
        problem = "delay_ms must be whole milliseconds up to 600000";
    else if (provider && strcmp (provider, "twilio") && strcmp (provider, "meta")
             && strcmp (provider, "all"))
        problem = "provider must be twilio, meta or all";
    if (!problem && rate) {
        char *end = NULL;
        errno = 0;
        plan.rate = strtod (rate, &end);
        if (errno || end == rate || *end || !(plan.rate >= 0.0 && plan.rate <= 1.0))
            problem = "rate must be a number from 0 to 1";
    }
    if (problem) {
        sb_sandbox_answer_json (answer, 400, json_pack ("{s:s}", "error", problem));
        sb_form_destroy (&form);
        return;
    }
    if (count)
        plan.mode = mode;
    if (rate)
        plan.rate_mode = mode;
    if (mode == SB_SANDBOX_FAIL_META131047 || mode == SB_SANDBOX_FAIL_META131056)
        plan.providers = SB_SANDBOX_META;
    else if (provider && strcmp (provider, "twilio") == 0)
        plan.providers = SB_SANDBOX_TWILIO;
    else if (provider && strcmp (provider, "meta") == 0)
        plan.providers = SB_SANDBOX_META;
    pthread_mutex_lock (&self->lock);
    self->plan = plan;
    pthread_mutex_unlock (&self->lock);
    sb_info (SB_SANDBOX_MODULE,
             "failures planned mode=%s count=%ld rate=%g retry_after=%ld delay_ms=%ld",
             sb_sandbox_fail_name (mode), plan.count, plan.rate, plan.retry_after_s, plan.delay_ms);
    sb_sandbox_answer_json (answer, 200, s_plan_json (&plan));
    sb_form_destroy (&form);
}

void
sb_sandbox_admin (sb_sandbox_t *self, const char *method, const char *path, const char *query,
                  sb_sandbox_answer_t *answer)
{
    if (strcmp (path, "/_sandbox/requests") == 0 && strcmp (method, "GET") == 0) {
        long since = -1;
        sb_form_t *form = query ? sb_form_parse (query, strlen (query)) : NULL;
        const char *since_text = form ? sb_form_get (form, "since") : NULL;
        if (since_text && sb_sandbox_parse_long (since_text, 0, LONG_MAX / 10, &since)) {
            answer->status = 400;
            answer->body = strdup ("{\"error\":\"since must be a whole number\"}");
            sb_form_destroy (&form);
            return;
        }
        sb_form_destroy (&form);
        pthread_mutex_lock (&self->lock);
        json_t *selected = self->log;
        json_incref (selected);
        if (since >= 0) {
            json_decref (selected);
            selected = json_array ();
            size_t i;
            json_t *record;
            json_array_foreach (self->log, i, record)
                if (json_integer_value (json_object_get (record, "seq")) > since)
                    json_array_append (selected, record);
        }
        answer->status = 200;
        answer->body = json_dumps (selected, JSON_COMPACT);
        json_decref (selected);  //  under the lock: the records are shared
        pthread_mutex_unlock (&self->lock);
        if (!answer->body) {
            answer->status = 500;
            answer->body = strdup ("{\"error\":\"out of memory\"}");
        }
    }
    else if (strcmp (path, "/_sandbox/requests") == 0 && strcmp (method, "DELETE") == 0) {
        pthread_mutex_lock (&self->lock);
        size_t count = json_array_size (self->log);
        json_array_clear (self->log);
        pthread_mutex_unlock (&self->lock);
        sb_sandbox_answer_json (answer, 200, json_pack ("{s:I}", "cleared", (json_int_t) count));
    }
    else if (strcmp (path, "/_sandbox/fail") == 0 && strcmp (method, "POST") == 0)
        s_fail_set (self, query, answer);
    else if (strcmp (path, "/_sandbox/fail") == 0
             && (strcmp (method, "GET") == 0 || strcmp (method, "DELETE") == 0)) {
        pthread_mutex_lock (&self->lock);
        if (strcmp (method, "DELETE") == 0)
            sb_sandbox_plan_reset (&self->plan);
        sb_sandbox_plan_t plan = self->plan;
        pthread_mutex_unlock (&self->lock);
        sb_sandbox_answer_json (answer, 200, s_plan_json (&plan));
    }
    else if (strcmp (path, "/_sandbox/requests") == 0 || strcmp (path, "/_sandbox/fail") == 0) {
        answer->status = 405;
        answer->body = strdup ("{\"error\":\"method not allowed\"}");
    }
    else {
        answer->status = 404;
        answer->body = strdup ("{\"error\":\"not found\"}");
    }
}
