-- The demo's schema (DATABASE_URL): accounts, items and API key records. Idempotent: run at
-- every start, under an advisory lock so simultaneous starts do not race.

CREATE TABLE IF NOT EXISTS users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    role          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- One account per normalised email (the demo trims and lower-cases before it stores).
CREATE UNIQUE INDEX IF NOT EXISTS users_email_normalised ON users (lower(email));

CREATE TABLE IF NOT EXISTS items (
    id    uuid PRIMARY KEY,
    owner uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name  text NOT NULL
);
-- Items are read under their owner, in id (UUID v7: creation) order.
CREATE INDEX IF NOT EXISTS items_owner_id ON items (owner, id);

-- API key records: the library's record as JSON (the secret's hash, never the secret), with
-- the state that changes on its own columns.
CREATE TABLE IF NOT EXISTS api_keys (
    id         text PRIMARY KEY,
    owner      text NOT NULL,
    created_at bigint NOT NULL,
    record     jsonb NOT NULL,
    revoked    boolean NOT NULL DEFAULT false,
    last_used  bigint
);
CREATE INDEX IF NOT EXISTS api_keys_owner ON api_keys (owner, created_at);
