-- 0006_meta_fields: what Meta's other webhook fields leave in the tables
-- (issue 12, "the other webhook fields become events").
--
-- Every such event is a row of events (kind echo, preference, template,
-- account, other, or call), as before. Beyond that:
--
-- Echoes (message_echoes, smb_message_echoes) are messages our number sent,
-- from the WhatsApp Business app or the API: outbound rows of messages with
-- origin 'echo', keyed like every message by (provider, provider_id), never
-- inbound and never replied to. The echo of one of our own sends can
-- arrive before or after the send's answer (the provider id on our row):
--  - after: our row holds the id, the echo inserts nothing (ON CONFLICT);
--  - before: the echo's row holds the id, and the send's answer finds it
--    taken. The trigger below then makes the echo's row ours (outbox_id,
--    event_id) and removes our provisional row (still without a provider
--    id), so either way the conversation has one outbound message.
ALTER TABLE messages ADD COLUMN origin text NOT NULL DEFAULT '';  -- '' ours or inbound; 'echo'

-- The marketing preference a user set (user_preferences: stop, resume) and
-- Meta's time for it; a preference older than the one recorded is ignored.
ALTER TABLE contacts ADD COLUMN marketing_preference text NOT NULL DEFAULT '';  -- '', stop, resume
ALTER TABLE contacts ADD COLUMN marketing_preference_at timestamptz;

CREATE FUNCTION sb_adopt_echo () RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    echo_id bigint;
BEGIN
    SELECT m.id INTO echo_id FROM messages m
     WHERE m.provider = NEW.provider AND m.provider_id = NEW.provider_id
       AND m.origin = 'echo' AND m.outbox_id IS NULL
     LIMIT 1;
    IF echo_id IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE messages e SET outbox_id = NEW.id,
           event_id = COALESCE ((SELECT q.event_id FROM messages q
                                  WHERE q.outbox_id = NEW.id AND q.direction = 'outbound'
                                    AND q.provider_id IS NULL LIMIT 1), e.event_id),
           updated_at = now ()
     WHERE e.id = echo_id;
    DELETE FROM messages
     WHERE outbox_id = NEW.id AND direction = 'outbound' AND provider_id IS NULL
       AND id <> echo_id;
    RETURN NULL;
END
$$;

-- Fires when the send's answer puts the provider id on the outbox row.
CREATE TRIGGER outbox_adopt_echo AFTER UPDATE OF provider_id ON outbox
    FOR EACH ROW WHEN (NEW.provider_id IS NOT NULL
                       AND NEW.provider_id IS DISTINCT FROM OLD.provider_id)
    EXECUTE FUNCTION sb_adopt_echo ();
