-- Webhooks: subscriptions, and the deliveries made to them.
--
-- `webhook_subscriptions` is a read model like any other: folded from the log
-- (`webhook_subscribed`, `webhook_unsubscribed`), per generation, rebuilt by replay. A removed
-- subscription keeps its row with the sequence of its removal, so the dispatcher can tell
-- which events it was subscribed to.
--
-- `webhook_deliveries` and `webhook_cursor` are operational data like `downloads`: the
-- delivery log (also the dispatcher's queue) and how far the dispatcher has read the log. They
-- are not rebuilt by replay and kept across it (no generation column).

CREATE TABLE webhook_subscriptions (
    gen             bigint NOT NULL,
    subscription_id text NOT NULL,
    url             text NOT NULL,
    event_types     text NOT NULL,   -- JSON array of webhook event types
    crates          text NOT NULL,   -- JSON array of crate patterns; empty: all crates
    description     text,
    created_by      text NOT NULL,
    created_at      bigint NOT NULL,
    created_seq     bigint NOT NULL,
    removed_seq     bigint,
    PRIMARY KEY (gen, subscription_id)
);

-- One row per (subscription, event) sent or to be sent; a replay adds rows again.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id text NOT NULL,
    canon           text NOT NULL,   -- the crate: deliveries of one crate go out in order
    seq             bigint NOT NULL,   -- the event's log sequence
    event_type      text NOT NULL,     -- e.g. crate.published
    webhook_id      text NOT NULL,     -- the same for every attempt, retry and replay
    payload         text NOT NULL,     -- the JSON body
    status          text NOT NULL,     -- pending, delivered or failed
    replay          boolean NOT NULL,
    attempts        bigint NOT NULL,
    created_at      bigint NOT NULL,   -- Unix milliseconds
    next_attempt_at bigint NOT NULL,
    last_attempt_at bigint,
    last_status     bigint,            -- HTTP status of the last answer
    last_error      text,
    done_at         bigint
);
CREATE INDEX webhook_deliveries_queue_idx
    ON webhook_deliveries (status, subscription_id, canon, id);
CREATE INDEX webhook_deliveries_subscription_idx ON webhook_deliveries (subscription_id, id);
CREATE INDEX webhook_deliveries_done_idx ON webhook_deliveries (done_at);

-- The last log sequence the dispatcher has turned into deliveries.
CREATE TABLE webhook_cursor (
    id  bigint PRIMARY KEY,
    seq bigint NOT NULL
);
INSERT INTO webhook_cursor (id, seq) VALUES (1, 0);
