-- Downloads per version and per UTC day (days since the Unix epoch), beside the running totals
-- of `downloads`. Operational data like `downloads`: written in batches by the api, kept
-- across `depot replay` (no generation column), never rebuilt from the log. A batch is
-- counted on the day it is written (batches cover a few seconds).
CREATE TABLE download_days (
    canon text COLLATE "C" NOT NULL,
    vers  text COLLATE "C" NOT NULL,
    day   bigint NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (canon, vers, day)
);
