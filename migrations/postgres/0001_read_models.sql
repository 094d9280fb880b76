-- Read models folded from the event log by the projector. Everything here except `downloads`
-- can be dropped and rebuilt by replaying the log.

-- How far each projector has folded the log. Written in the same transaction as the rows.
CREATE TABLE projector_checkpoint (
    projector text PRIMARY KEY,
    last_seq  bigint NOT NULL
);

-- One row per crate aggregate (canonical name).
CREATE TABLE crates (
    canon        text PRIMARY KEY,
    name         text,                 -- published spelling; NULL while no upload is live
    state        jsonb NOT NULL,       -- the CrateState aggregate
    last_seq     bigint NOT NULL,      -- log sequence of the last event of this crate
    description  text,
    keywords     text NOT NULL DEFAULT '',
    max_version  text,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX crates_name_idx ON crates (name);

-- One row per upload (a rejected version may be uploaded again).
CREATE TABLE versions (
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
    metadata    jsonb,                 -- ExtractedMetadata (accepted only)
    reasons     jsonb,                 -- rejection reasons (rejected only)
    uploaded_at timestamptz NOT NULL,
    PRIMARY KEY (canon, upload_seq)
);
CREATE INDEX versions_lookup_idx ON versions (canon, vers);

-- The pre-rendered sparse index file of each crate with accepted versions.
CREATE TABLE index_files (
    canon         text PRIMARY KEY,
    name          text NOT NULL,
    body          bytea NOT NULL,
    etag          text NOT NULL,
    last_modified timestamptz NOT NULL,
    last_seq      bigint NOT NULL
);

-- Users are known once a token has been issued to them.
CREATE TABLE users (
    login      text PRIMARY KEY,       -- lowercase
    display    text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE tokens (
    token_id      uuid PRIMARY KEY,
    login         text NOT NULL,
    secret_sha256 text NOT NULL UNIQUE,
    kind          text NOT NULL,
    label         text,
    scopes        jsonb NOT NULL,
    crates        jsonb NOT NULL,
    expires_at    timestamptz,
    revoked       boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL
);

-- Download counts are operational data, not events: they are not rebuilt by replay.
CREATE TABLE downloads (
    canon text NOT NULL,
    vers  text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (canon, vers)
);
