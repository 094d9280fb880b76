-- Why a version was yanked, where its owner said (crates.io's `yank_message`, set with
-- `PATCH /api/v1/crates/{name}/{version}`), folded from `version_yanked` per generation like
-- every read model. A yank without a message, or an unyank, removes the row.
CREATE TABLE yank_messages (
    gen     bigint NOT NULL,
    canon   text NOT NULL,
    vers    text NOT NULL,
    message text NOT NULL,
    seq     bigint NOT NULL,
    PRIMARY KEY (gen, canon, vers)
);
