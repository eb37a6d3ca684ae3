-- 0013_ingest_cursors: storing split among dispatchers (issue 15).
--
-- Each dispatcher stores only the events of the partitions it holds
-- (sb_store_event_partition: the conversation's partition, as the outbox's
-- 0010), so a cursor can no longer be one number per ingress. A row here is
-- one dispatcher's claim, written in the transaction of each batch it
-- stores: every event of ingress_id's journal (epoch) up to last_seq whose
-- partition is set in parts is in events. Every row is true, so for a
-- partition p the highest last_seq among the rows with p set is too: a
-- dispatcher that takes p over replays the journal from there
-- (sb_store_cover), whoever stored before it and whether it died or gave
-- p up. A dispatcher's row moves up with its batches while its partitions
-- stay the same; a batch of another set of partitions writes another row.
--
-- instance is the writing store's random instance (sb_store_conn.c) and
-- the number of its set of partitions (instance.N): a restarted dispatcher
-- or a new set writes a new row, and the old one stays true.
CREATE TABLE ingest_cursors (
    ingress_id  text NOT NULL,
    instance    text NOT NULL,
    epoch       text NOT NULL,
    last_seq    bigint NOT NULL,
    parts       bit(256) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ingress_id, instance)
);

-- What consumer_cursors said (the highest seq stored, by one dispatcher
-- storing every event) holds for every partition.
INSERT INTO ingest_cursors (ingress_id, instance, epoch, last_seq, parts, updated_at)
    SELECT ingress_id, '', epoch, last_seq, repeat ('1', 256)::bit(256), updated_at
    FROM consumer_cursors;

-- consumer_cursors is no longer written; it stays for a dispatcher of an
-- earlier version started against this database (it replays from an older
-- place: duplicates, which the unique keys refuse, nothing lost).
