-- Hosted documentation: the rustdoc output uploaded for a version, folded from the log
-- (`docs_uploaded`, on the crate's subject) per generation like every read model. The files
-- themselves are blobs listed in the manifest blob; a later upload of a version replaces its row.
CREATE TABLE docs (
    gen          bigint NOT NULL,
    canon        text COLLATE "C" NOT NULL,
    name         text NOT NULL,
    vers         text COLLATE "C" NOT NULL,
    manifest     text NOT NULL,
    files        bigint NOT NULL,
    bytes        bigint NOT NULL,
    token_id     text,
    uploaded_by  text NOT NULL,
    uploaded_seq bigint NOT NULL,
    uploaded_at  bigint NOT NULL,
    PRIMARY KEY (gen, canon, vers)
);
