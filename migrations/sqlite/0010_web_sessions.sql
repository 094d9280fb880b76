-- Sessions of the web UI. Operational data: written by the api when someone signs in with a
-- token, never rebuilt from the log, kept across `depot replay` (no generation column). A row
-- holds only hashes: the sha256 of the session cookie's secret and of the token it was opened
-- with, so the token's revocation, expiry or disabled user ends the session at once.
CREATE TABLE web_sessions (
    id_sha256    text NOT NULL PRIMARY KEY,
    token_sha256 text NOT NULL,
    created_at   bigint NOT NULL,   -- Unix milliseconds
    expires_at   bigint NOT NULL    -- Unix milliseconds
);
CREATE INDEX web_sessions_token_idx ON web_sessions (token_sha256);
CREATE INDEX web_sessions_expiry_idx ON web_sessions (expires_at);
