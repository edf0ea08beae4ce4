-- Upgrade fastapi-otp-authentication 0.2.0 tables to otpcore, on PostgreSQL.
-- Assumes the reference's names: table "users" (primary key "id") and "token_blacklist";
-- edit them if yours differ. Run once, e.g.  psql "$DATABASE_URL" -f postgresql.sql
-- Then read the report:  SELECT * FROM otpcore_upgrade_report;
BEGIN;

-- Columns otpcore adds or widens.
ALTER TABLE users ALTER COLUMN otp_code TYPE VARCHAR(64);  -- an HMAC; was VARCHAR(20)
ALTER TABLE users ADD COLUMN IF NOT EXISTS otp_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS otp_last_failure_at TIMESTAMP WITHOUT TIME ZONE;
ALTER TABLE users ADD COLUMN IF NOT EXISTS otp_version INTEGER NOT NULL DEFAULT 0;
-- Pending reference codes are plain text; otpcore compares HMACs: they die.
UPDATE users SET otp_code = NULL, otp_created_at = NULL, otp_attempts = 0;
CREATE INDEX IF NOT EXISTS ix_token_blacklist_blacklisted_at ON token_blacklist (blacklisted_at);
CREATE INDEX IF NOT EXISTS ix_token_blacklist_expires_at ON token_blacklist (expires_at);

-- E-mail normalization: otpcore finds accounts by the lowercased address. Rows that
-- normalize to the same address keep one owner: the verified row first, then the one that
-- requested a code last, then the lowest id. The others keep everything but their e-mail,
-- which moves aside to 'otpcore-duplicate-<id>@invalid' (never deliverable, never a match),
-- and are listed in the report as 'duplicate'. No row is deleted.
CREATE TABLE IF NOT EXISTS otpcore_upgrade_report (
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    outcome TEXT NOT NULL,
    kept_user_id TEXT
);

-- SQL can lowercase ASCII only: addresses with other characters or IDNA ('xn--') labels
-- are left as they are and reported as 'review' (normalize them with otpcore's
-- normalize_email, in Python).
CREATE TEMP TABLE otpcore_ranked ON COMMIT DROP AS
SELECT
    id,
    email,
    lower(trim(email)) AS normal,
    row_number() OVER owner AS place,
    first_value(id) OVER owner AS kept
FROM users
WHERE email ~ '^[ -~]*$' AND lower(email) NOT LIKE '%xn--%'
WINDOW owner AS (
    PARTITION BY lower(trim(email))
    ORDER BY is_verified DESC, last_otp_request_at DESC NULLS LAST, id
);

INSERT INTO otpcore_upgrade_report (user_id, email, outcome, kept_user_id)
SELECT id::text, email, 'duplicate', kept::text FROM otpcore_ranked WHERE place > 1;

UPDATE users SET email = 'otpcore-duplicate-' || users.id::text || '@invalid'
FROM otpcore_ranked AS r
WHERE r.id = users.id AND r.place > 1;

UPDATE users SET email = r.normal
FROM otpcore_ranked AS r
WHERE r.id = users.id AND r.place = 1 AND users.email <> r.normal;

INSERT INTO otpcore_upgrade_report (user_id, email, outcome, kept_user_id)
SELECT id::text, email, 'review', NULL FROM users
WHERE email !~ '^[ -~]*$' OR lower(email) LIKE '%xn--%';

COMMIT;
