-- otpcore's pending-challenge and limit-counter tables (issue 8) on PostgreSQL, for databases
-- whose tables exist. Idempotent. Assumes the revocation table "token_blacklist"; the tables
-- are named after it ("<revocation table>_challenges", "<revocation table>_limits"): edit
-- the names if yours differ.
-- Run once, e.g.  psql "$DATABASE_URL" -f postgresql-abuse.sql
BEGIN;

CREATE TABLE IF NOT EXISTS token_blacklist_challenges (
    id VARCHAR(64) NOT NULL,
    subject VARCHAR(64) NOT NULL,
    code_hash VARCHAR(64),
    issued_at TIMESTAMP WITHOUT TIME ZONE,
    attempts INTEGER DEFAULT 0 NOT NULL,
    unbound_attempts INTEGER DEFAULT 0 NOT NULL,
    failures INTEGER DEFAULT 0 NOT NULL,
    last_request_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    last_failure_at TIMESTAMP WITHOUT TIME ZONE,
    version INTEGER DEFAULT 0 NOT NULL,
    expires_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    issue_order BIGINT DEFAULT 0 NOT NULL,
    link_hash VARCHAR(64),
    PRIMARY KEY (id)
);
-- The magic link's keyed hash (issue 9), for a table made by an earlier version of this script.
ALTER TABLE token_blacklist_challenges ADD COLUMN IF NOT EXISTS link_hash VARCHAR(64);
CREATE INDEX IF NOT EXISTS ix_token_blacklist_challenges_subject_last_request_at
    ON token_blacklist_challenges (subject, last_request_at);
CREATE INDEX IF NOT EXISTS ix_token_blacklist_challenges_expires_at
    ON token_blacklist_challenges (expires_at);

CREATE TABLE IF NOT EXISTS token_blacklist_limits (
    "key" VARCHAR(64) NOT NULL,
    window_start TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    "count" INTEGER NOT NULL,
    previous_count INTEGER NOT NULL,
    expires_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY ("key")
);
CREATE INDEX IF NOT EXISTS ix_token_blacklist_limits_expires_at
    ON token_blacklist_limits (expires_at);

COMMIT;
