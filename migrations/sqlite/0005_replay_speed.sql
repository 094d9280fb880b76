-- PostgreSQL's 0005 sets byte-wise collation on text keys and lz4 compression on large
-- values. SQLite already compares text as bytes and does not compress: nothing to do here
-- (the migration keeps both folders numbered alike).
SELECT 1;
