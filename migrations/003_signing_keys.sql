-- The gateway's own signing keys (docs/API.md section 3): user access, refresh and
-- collector tokens are signed with the current key; retired keys still verify the tokens
-- they signed until those have expired, then are deleted. Shared by every instance.
CREATE TABLE signing_keys (
  -- RFC 7638 thumbprint of the public key.
  kid text PRIMARY KEY,
  alg text NOT NULL CHECK (alg IN ('ES256')),
  -- PKCS#8 PEM. Whoever can read this table can mint gateway tokens: guard it as the database itself.
  private_pem text NOT NULL,
  public_jwk jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Set when another key became current; null for the current key.
  retired_at timestamptz
);

-- At most one current key.
CREATE UNIQUE INDEX signing_keys_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
