-- 0012_console_codes_retries: what switchboard console shows after a
-- reload that it used to see only live (issue 14).
--
-- Captured codes. A rule with `publish: true` (e.g. a verification code)
-- makes the dispatcher publish a rule_matched outcome; the batch that
-- decided it also records the match here, in its own transaction: the
-- rule's name and what it captured (the part a regex found, else the text
-- the rule matched: a gather's digits). A row only for a match, so a batch
-- without one sends no statement; one per event (a replay or a provider's
-- retry decides nothing, and the key refuses a second). It goes with its
-- event.
CREATE TABLE captures (
    event_id    bigint PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    rule        text NOT NULL DEFAULT '',
    captured    text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Retries from the console. A Retry puts a failed or dead row back to
-- pending; the next attempt rewrites last_error and attempts, so the retry
-- itself is kept in columns nothing else writes: how many, and the last.
ALTER TABLE outbox ADD COLUMN retries integer NOT NULL DEFAULT 0,
                   ADD COLUMN retried_at timestamptz;
