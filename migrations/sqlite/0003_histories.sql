-- Costs that do not grow with a crate's history.
--
-- `crates.state` holds only the aggregate's head (name, owners, how many uploads are live);
-- commands and the projector load the uploads of the versions they decide on through
-- `versions_base_idx` (the version without build metadata). Index files are no longer stored
-- whole: they are assembled from the accepted versions' lines in upload order (`entry`, or
-- `yanked_line` while yanked), so an accepted version adds one row and a yank changes one;
-- `index_files` keeps the name, ETag and Last-Modified.

ALTER TABLE versions ADD COLUMN vers_base text NOT NULL DEFAULT '';
UPDATE versions SET vers_base = CASE WHEN instr(vers, '+') > 0
    THEN substr(vers, 1, instr(vers, '+') - 1) ELSE vers END;
CREATE INDEX versions_base_idx ON versions (gen, canon, vers_base);

-- The index line while the version is yanked (NULL: derived from `entry` when read).
ALTER TABLE versions ADD COLUMN yanked_line text;

UPDATE crates SET state = json_set(
    json_remove(state, '$.versions'),
    '$.live',
    (SELECT count(*) FROM versions v
     WHERE v.gen = crates.gen AND v.canon = crates.canon AND v.status <> 'rejected')
);

ALTER TABLE index_files DROP COLUMN body;

-- The ETag names the last event that changed the file's lines (see the projector): assembled
-- bytes are not hashed on every change.
UPDATE index_files SET etag = '"' || CAST(last_seq AS TEXT) || '"';
