-- Users, their refresh tokens and API tokens, and the audit log (docs/API.md "Users, tokens, audit").

CREATE TABLE users (
  id uuid PRIMARY KEY,
  username text NOT NULL,
  email text NOT NULL,
  org text NOT NULL,
  org_id text NOT NULL,
  -- Self-describing scrypt hash: scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>
  password_hash text NOT NULL,
  role text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_login_at timestamptz
);

-- Usernames are unique whatever their case.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

-- One row per refresh token issued: single use, grouped in families (one family per login)
-- so that a reused token revokes every token of its family.
CREATE TABLE refresh_tokens (
  jti uuid PRIMARY KEY,
  family_id uuid NOT NULL,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  revoked_at timestamptz
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Opaque `mc_...` tokens for backends, stored as the SHA-256 of the token only.
CREATE TABLE api_tokens (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name text NOT NULL,
  token_hash text NOT NULL,
  -- The first characters of the token, so an operator can tell tokens apart.
  token_prefix text NOT NULL,
  scopes text[] NOT NULL,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz
);

CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE audit_log (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  action text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
  -- Who acted: "user:<id>", "api_token:<id>", "collector:<id>", or null (anonymous).
  actor text,
  -- What was acted on, in the same form.
  target text,
  ip text,
  details jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_created ON audit_log (created_at DESC, id DESC);
