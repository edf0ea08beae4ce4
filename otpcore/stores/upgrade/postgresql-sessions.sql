-- otpcore's sessions table (issue 10) on PostgreSQL, for databases whose tables exist.
-- Idempotent. Assumes the revocation table "token_blacklist"; the sessions table is named
-- after it ("<revocation table>_sessions"): edit the names if yours differ.
-- Run once, e.g.  psql "$DATABASE_URL" -f postgresql-sessions.sql
BEGIN;

CREATE TABLE IF NOT EXISTS token_blacklist_sessions (
    sid VARCHAR(64) NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    last_used_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    rotated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    expires_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    generation INTEGER DEFAULT 0 NOT NULL,
    user_agent VARCHAR(256),
    ip VARCHAR(64),
    ended_at TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (sid)
);
CREATE INDEX IF NOT EXISTS ix_token_blacklist_sessions_user_id_expires_at
    ON token_blacklist_sessions (user_id, expires_at);
CREATE INDEX IF NOT EXISTS ix_token_blacklist_sessions_expires_at
    ON token_blacklist_sessions (expires_at);

COMMIT;
