-- 0003_content_key: events without a provider id are unique by content too.
--
-- A Meta change can carry a message or status without an id. Such an event
-- used to be unique by its journal position only, so a provider's retry of
-- the same webhook (after a 503, or after the provider's own timeout while
-- the ingress was still committing) became a second event and a second
-- reply. sb_store now sets dedup_detail of such an event to
-- 'content:' || hex SHA-256 of what makes a retry a retry: the same request
-- bytes (provider, kind, the SHA-256 of the request body, the event's place
-- in the request and its own JSON item), so the retry conflicts here and
-- inserts nothing, while the same content delivered again in another
-- request (a template approved a second time) is a new event. Rows written
-- before keep dedup_detail '' and are not in it.
CREATE UNIQUE INDEX events_content_key ON events (provider, kind, dedup_detail)
    WHERE provider_id = '' AND dedup_detail <> '';
