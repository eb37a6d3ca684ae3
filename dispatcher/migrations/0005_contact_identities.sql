-- 0005_contact_identities: a contact known by several identifiers.
--
-- Since April 2026 Meta names a WhatsApp user by a business-scoped user id
-- (BSUID, "US.1349..."), beside their phone number or instead of it, and
-- gives a new BSUID when they change number. A contact stays one row of
-- contacts, keyed by its address (the phone number when known, else the
-- BSUID); contact_identities maps every identifier it was seen with to
-- that address. The batch write looks contacts up by identity, links an
-- event's phone and BSUID (a merge when both were contacts already), and
-- moves a contact to its new identifier on a change-of-number or
-- change-of-id system message (sb_contact_moves below).
CREATE TABLE contact_identities (
    provider    text NOT NULL,
    channel     text NOT NULL,
    identity    text NOT NULL,             -- phone number or (parent) BSUID, as the provider gave it
    address     text NOT NULL,             -- contacts.address of the contact it names
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, channel, identity)
);
CREATE INDEX contact_identities_address ON contact_identities (provider, channel, address);

-- A move rewrites a contact's messages; without this index each move
-- would read the whole table.
CREATE INDEX messages_contact ON messages (provider, channel, contact_addr);

-- Every contact is known by its own address.
INSERT INTO contact_identities (provider, channel, identity, address)
    SELECT provider, channel, address, address FROM contacts
    ON CONFLICT DO NOTHING;

-- Move contacts, in array order: (p, c, old_addr) becomes (p, c, new_addr)
-- with its history (messages), opt-out and last inbound time (the
-- WhatsApp window). When new_addr is a contact already, the two merge:
-- opted out if either was, the later inbound time, the newer profile name.
-- forget: the old address stops naming the contact (a changed phone
-- number may go to someone else).
CREATE FUNCTION sb_contact_moves (p text[], c text[], old_addr text[], new_addr text[],
                                  forget bool[]) RETURNS integer
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
