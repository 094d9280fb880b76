-- Accounts and the token lifecycle.
--
-- Users are created explicitly (`user_created`); admins manage any crate, disabled users'
-- tokens stop working. A token records who created it, and the crates it may read when they
-- differ from those it may write (CI tokens). Trusted-publishing trusts are kept per
-- crate. All of these are folded from the log, per generation.
--
-- `token_usage` is operational data like `downloads`: when a token was last used, written in
-- batches by the api, not rebuilt by replay.

ALTER TABLE users ADD COLUMN admin boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN disabled boolean NOT NULL DEFAULT false;

ALTER TABLE tokens ADD COLUMN created_by text;
ALTER TABLE tokens ADD COLUMN read_crates text;   -- JSON; NULL: the same as `crates`
CREATE INDEX tokens_login_idx ON tokens (gen, login);

CREATE TABLE token_usage (
    token_id     text PRIMARY KEY,
    last_used_at bigint NOT NULL
);

CREATE TABLE trusts (
    gen        bigint NOT NULL,
    trust_id   text NOT NULL,
    canon      text NOT NULL,
    issuer     text NOT NULL,
    policy     text NOT NULL,          -- the trust_added JSON: issuer, audience, required claims
    created_by text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (gen, trust_id)
);
CREATE INDEX trusts_canon_idx ON trusts (gen, canon);
CREATE INDEX trusts_issuer_idx ON trusts (gen, issuer);

-- Crates that accept only tokens minted by trusted publishing for publishing.
CREATE TABLE trusted_only (
    gen   bigint NOT NULL,
    canon text NOT NULL,
    PRIMARY KEY (gen, canon)
);
