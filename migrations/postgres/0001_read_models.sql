-- Read models folded from the event log by the projector. Every projected table is keyed by a
-- generation: `depot replay` folds the log into a new generation while the active one keeps
-- serving, then switches `active_generation` in one transaction. Everything here except
-- `downloads` can be dropped and rebuilt by replaying the log.
--
-- Types are kept portable (text, bigint, boolean, bytes) so the SQLite schema is the same and
-- the statements are shared: JSON is stored as text, times as Unix milliseconds.

CREATE TABLE generations (
    gen        bigint PRIMARY KEY,
    state      text NOT NULL,          -- building | live | retired
    until_seq  bigint,                 -- a point-in-time generation stops here
    created_at bigint NOT NULL
);

CREATE TABLE active_generation (
    id  integer PRIMARY KEY CHECK (id = 1),
    gen bigint NOT NULL
);
INSERT INTO generations (gen, state, created_at) VALUES (1, 'live', 0);
INSERT INTO active_generation (id, gen) VALUES (1, 1);

-- How far the projector has folded the log into each generation; written in the same
-- transaction as the rows.
CREATE TABLE projector_checkpoint (
    gen      bigint PRIMARY KEY,
    last_seq bigint NOT NULL
);

-- One row per crate aggregate (canonical name).
CREATE TABLE crates (
    gen         bigint NOT NULL,
    canon       text NOT NULL,
    name        text,                  -- published spelling; NULL while no upload is live
    state       text NOT NULL,         -- the CrateState aggregate (JSON)
    last_seq    bigint NOT NULL,       -- log sequence of the last event of this crate
    description text,
    keywords    text NOT NULL DEFAULT '',
    max_version text,
    updated_at  bigint NOT NULL,
    PRIMARY KEY (gen, canon)
);

-- One row per upload (a rejected version may be uploaded again).
CREATE TABLE versions (
    gen         bigint NOT NULL,
    canon       text NOT NULL,
    upload_seq  bigint NOT NULL,       -- log sequence of the version_uploaded event
    name        text NOT NULL,
    vers        text NOT NULL,
    cksum       text NOT NULL,
    size        bigint NOT NULL,
    blob        text NOT NULL,
    uploader    text NOT NULL,
    status      text NOT NULL,         -- pending | accepted | rejected
    yanked      boolean NOT NULL DEFAULT false,
    entry       text,                  -- the IndexEntry JSON (accepted only)
    metadata    text,                  -- ExtractedMetadata JSON (accepted only)
    reasons     text,                  -- rejection reasons JSON (rejected only)
    uploaded_at bigint NOT NULL,
    PRIMARY KEY (gen, canon, upload_seq)
);
CREATE INDEX versions_lookup_idx ON versions (gen, canon, vers);

-- The pre-rendered sparse index file of each crate with accepted versions.
CREATE TABLE index_files (
    gen           bigint NOT NULL,
    canon         text NOT NULL,
    name          text NOT NULL,
    body          bytea NOT NULL,
    etag          text NOT NULL,
    last_modified bigint NOT NULL,
    last_seq      bigint NOT NULL,
    PRIMARY KEY (gen, canon)
);

-- Users are known once a token has been issued to them.
CREATE TABLE users (
    gen        bigint NOT NULL,
    login      text NOT NULL,          -- lowercase
    display    text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (gen, login)
);

CREATE TABLE tokens (
    gen           bigint NOT NULL,
    token_id      text NOT NULL,
    login         text NOT NULL,
    secret_sha256 text NOT NULL,
    kind          text NOT NULL,
    label         text,
    scopes        text NOT NULL,       -- JSON
    crates        text NOT NULL,       -- JSON
    expires_at    bigint,
    revoked       boolean NOT NULL DEFAULT false,
    created_at    bigint NOT NULL,
    PRIMARY KEY (gen, token_id)
);
CREATE INDEX tokens_secret_idx ON tokens (gen, secret_sha256);

-- Download counts are operational data, not events: they are not rebuilt by replay.
CREATE TABLE downloads (
    canon text NOT NULL,
    vers  text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (canon, vers)
);
