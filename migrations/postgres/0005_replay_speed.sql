-- Cheaper folding, for the projector and most of all for `depot replay`.
--
-- Text keys compare byte by byte (`COLLATE "C"`): every `versions` row is inserted into three
-- indexes on (gen, canon, …), and a locale-aware comparison costs several times a byte
-- comparison. The keys are canonical crate names and version numbers, ASCII, whose order is
-- the same under "C" as under C.UTF-8 (and it is SQLite's, whose text compares as bytes).
-- Every column compared with another across tables gets the same collation, so no comparison
-- mixes two.
ALTER TABLE crates
    ALTER COLUMN canon TYPE text COLLATE "C",
    ALTER COLUMN max_version TYPE text COLLATE "C";
ALTER TABLE versions
    ALTER COLUMN canon TYPE text COLLATE "C",
    ALTER COLUMN vers TYPE text COLLATE "C",
    ALTER COLUMN vers_base TYPE text COLLATE "C";
ALTER TABLE index_files ALTER COLUMN canon TYPE text COLLATE "C";
ALTER TABLE trusts ALTER COLUMN canon TYPE text COLLATE "C";
ALTER TABLE trusted_only ALTER COLUMN canon TYPE text COLLATE "C";
ALTER TABLE downloads
    ALTER COLUMN canon TYPE text COLLATE "C",
    ALTER COLUMN vers TYPE text COLLATE "C";

-- Values over ~2 KB (a version's index line and extracted metadata, readme included) are
-- compressed with lz4 rather than pglz, where the server supports it: several times cheaper
-- to compress and to read back. Stored values keep their compression until rewritten.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE versions
            ALTER COLUMN entry SET COMPRESSION lz4,
            ALTER COLUMN metadata SET COMPRESSION lz4,
            ALTER COLUMN reasons SET COMPRESSION lz4,
            ALTER COLUMN yanked_line SET COMPRESSION lz4;
        ALTER TABLE crates ALTER COLUMN state SET COMPRESSION lz4;
    END IF;
END
$$;
