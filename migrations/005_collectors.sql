-- PostgreSQL-monitoring collectors (docs/API.md section 7): registration with a certificate,
-- signatures seen (each proof of key possession is accepted once), and versioned configs.

CREATE TABLE collectors (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  hostname text NOT NULL,
  -- The self-signed certificate made at registration (PEM; its private key is never stored)
  -- and its SHA-256 thumbprint (hex, lower case, no separators).
  certificate text NOT NULL,
  thumbprint text NOT NULL,
  -- Who registered it: "user:<id>" or "secret" (X-Registration-Secret).
  registered_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Pushes, written coalesced every few seconds (not one round trip per push).
  last_push_at timestamptz,
  metrics_count bigint NOT NULL DEFAULT 0,
  -- A tombstone: a deleted collector's tokens and signatures are refused as such.
  deleted_at timestamptz
);

CREATE INDEX collectors_live_created ON collectors (created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- Signatures accepted for a token renewal, kept while their timestamp could still be
-- accepted: the same signature twice is a replay.
CREATE TABLE collector_signatures (
  signature_hash text PRIMARY KEY,
  collector_id uuid NOT NULL REFERENCES collectors (id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL
);

CREATE INDEX collector_signatures_expiry ON collector_signatures (expires_at);

-- Every version of every collector's config; the newest is the current one.
CREATE TABLE collector_configs (
  collector_id uuid NOT NULL REFERENCES collectors (id) ON DELETE CASCADE,
  version integer NOT NULL CHECK (version >= 1),
  config jsonb NOT NULL,
  -- "user:<id>", or null for the default version 1 made at registration.
  created_by text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (collector_id, version)
);
