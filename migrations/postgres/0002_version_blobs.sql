-- Blobs a version refers to besides its .crate, so `depot gc` keeps them: the publish metadata
-- JSON (uploads since it moved out of the event) and the readme text (accepted versions since
-- it moved out of the event). NULL for versions whose events carry them inline.
ALTER TABLE versions ADD COLUMN metadata_blob text;
ALTER TABLE versions ADD COLUMN readme_blob text;
