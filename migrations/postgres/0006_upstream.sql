-- The upstream-registry cache (a pull-through proxy of crates.io or another sparse registry).
--
-- What was fetched is folded from the log (`upstream_index_stored`, `upstream_crate_stored`),
-- per generation like every read model; the bodies themselves are blobs. When an index file
-- was last revalidated is not kept here: each api process remembers that in memory.

-- The stored body of each upstream index file, by the lowercase name the file is named by.
CREATE TABLE upstream_index (
    gen           bigint NOT NULL,
    name          text COLLATE "C" NOT NULL,
    blob          text NOT NULL,
    size          bigint NOT NULL,
    etag          text,
    last_modified text,
    upstream      text NOT NULL,
    stored_seq    bigint NOT NULL,
    stored_at     bigint NOT NULL,
    PRIMARY KEY (gen, name)
);

-- Every upstream .crate stored, verified against its index line's checksum. The first one of
-- a version stays (as a lock file would pin it).
CREATE TABLE upstream_crates (
    gen        bigint NOT NULL,
    name       text COLLATE "C" NOT NULL,  -- lowercase
    vers       text COLLATE "C" NOT NULL,
    cksum      text NOT NULL,
    size       bigint NOT NULL,
    upstream   text NOT NULL,
    stored_seq bigint NOT NULL,
    stored_at  bigint NOT NULL,
    PRIMARY KEY (gen, name, vers)
);

-- Canonical names a new private crate may take although upstream has them (the
-- dependency-confusion guard refuses them otherwise).
CREATE TABLE upstream_allowed (
    gen        bigint NOT NULL,
    canon      text COLLATE "C" NOT NULL,
    allowed_by text NOT NULL,
    allowed_at bigint NOT NULL,
    PRIMARY KEY (gen, canon)
);
