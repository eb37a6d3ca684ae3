-- 0007_contact_moves_merge: a move or merge of contacts (sb_contact_moves,
-- 0005_contact_identities.sql) keeps the marketing preference too.
--
-- 0006 added contacts.marketing_preference after 0005 wrote the function:
-- a contact merged into another lost its preference. Now the merged
-- contact keeps the newer of the two by Meta's time (as sb_prefs records
-- two preferences of one contact), and the one it has when the other has
-- none. Everything else as in 0005: opted out if either was, the later
-- inbound time, the profile name of the contact moved onto when it has
-- one. A contact moved to an address that is no contact keeps its row,
-- hence all of its columns.
CREATE OR REPLACE FUNCTION sb_contact_moves (p text[], c text[], old_addr text[],
                                             new_addr text[], forget bool[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    moved integer := 0;
    o contacts%ROWTYPE;
BEGIN
    FOR i IN 1 .. coalesce (array_length (p, 1), 0) LOOP
        CONTINUE WHEN old_addr[i] = new_addr[i];
        SELECT * INTO o FROM contacts
            WHERE provider = p[i] AND channel = c[i] AND address = old_addr[i] FOR UPDATE;
        IF FOUND THEN
            UPDATE contacts n SET
                opted_out = n.opted_out OR o.opted_out,
                opted_out_at = CASE WHEN n.opted_out THEN n.opted_out_at ELSE o.opted_out_at END,
                last_inbound_at = GREATEST (n.last_inbound_at, o.last_inbound_at),
                profile_name = CASE WHEN n.profile_name <> '' THEN n.profile_name
                                    ELSE o.profile_name END,
                marketing_preference =
                    CASE WHEN o.marketing_preference <> ''
                              AND (n.marketing_preference = ''
                                   OR o.marketing_preference_at > n.marketing_preference_at)
                         THEN o.marketing_preference ELSE n.marketing_preference END,
                marketing_preference_at =
                    CASE WHEN o.marketing_preference <> ''
                              AND (n.marketing_preference = ''
                                   OR o.marketing_preference_at > n.marketing_preference_at)
                         THEN o.marketing_preference_at ELSE n.marketing_preference_at END,
                updated_at = now ()
                WHERE n.provider = p[i] AND n.channel = c[i] AND n.address = new_addr[i];
            IF FOUND THEN
                DELETE FROM contacts
                    WHERE provider = p[i] AND channel = c[i] AND address = old_addr[i];
            ELSE
                UPDATE contacts SET address = new_addr[i], updated_at = now ()
                    WHERE provider = p[i] AND channel = c[i] AND address = old_addr[i];
            END IF;
            moved := moved + 1;
        END IF;
        UPDATE messages SET contact_addr = new_addr[i]
            WHERE provider = p[i] AND channel = c[i] AND contact_addr = old_addr[i];
        UPDATE contact_identities SET address = new_addr[i]
            WHERE provider = p[i] AND channel = c[i] AND address = old_addr[i];
        IF forget[i] THEN
            DELETE FROM contact_identities
                WHERE provider = p[i] AND channel = c[i] AND identity = old_addr[i];
        END IF;
        INSERT INTO contact_identities (provider, channel, identity, address)
            VALUES (p[i], c[i], new_addr[i], new_addr[i])
            ON CONFLICT (provider, channel, identity) DO UPDATE SET address = EXCLUDED.address;
    END LOOP;
    RETURN moved;
END $$;
