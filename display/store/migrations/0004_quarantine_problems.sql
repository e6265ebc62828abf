-- yizheng schema, version 4: the quarantine lists current problems, once each.
-- Version 3 added a row every time a bad record was seen, so a feed pulled every
-- minute repeated the same problem without end, and a record fixed at the source
-- stayed listed. Now a row is one record's latest problem (or, for a problem with
-- no record id, one reason): `at` is when it was last seen, `first_at` when first,
-- `seen` how often. The row goes when the record is accepted, or after 30 days
-- unseen.

ALTER TABLE quarantine ADD COLUMN source_key TEXT NOT NULL DEFAULT '';
ALTER TABLE quarantine ADD COLUMN first_at TEXT;
ALTER TABLE quarantine ADD COLUMN seen INTEGER NOT NULL DEFAULT 1;

-- What identifies a problem: the record's id, else its reason.
UPDATE quarantine SET source_key = coalesce(source_id, '?' || reason);
-- Keep the newest row of each, with the first sighting and the count.
UPDATE quarantine SET
    first_at = (SELECT min(q.at) FROM quarantine q
                WHERE q.feed = quarantine.feed AND q.source_key = quarantine.source_key),
    seen = (SELECT count(*) FROM quarantine q
            WHERE q.feed = quarantine.feed AND q.source_key = quarantine.source_key);
DELETE FROM quarantine WHERE id NOT IN (
    SELECT max(q.id) FROM quarantine q GROUP BY q.feed, q.source_key
);
CREATE UNIQUE INDEX quarantine_problem ON quarantine (feed, source_key);
