-- 0008_console: the indexes switchboard console's pages read by (issue 14).
--
-- A conversation is one contact's messages, (provider, channel,
-- contact_addr), newest first and paged by id (keyset: id < the last one
-- shown). messages_contact (0005) finds them but must sort each page; this
-- index hands them over in order, and lets the conversation list take each
-- conversation's newest id from the index alone.
CREATE INDEX messages_conversation ON messages (provider, channel, contact_addr, id);

-- The console's dead letters: outbox rows that failed, died or were never
-- sent, newest first. Few next to the sent ones, so a partial index.
CREATE INDEX outbox_trouble ON outbox (id) WHERE state IN ('failed', 'dead', 'not_sent');
