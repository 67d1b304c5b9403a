-- Devices provisioned for the embedded MQTT broker (docs/API.md section 8), and the live
-- MQTT sessions of every gateway instance (for `connected` in GET /devices).

CREATE TABLE devices (
  -- Also the device's mqtt_user, a NATS subject token and an MQTT topic level.
  id uuid PRIMARY KEY,
  type text NOT NULL,
  -- SHA-256 (hex) of the MQTT password: the password is 256 random bits, so a plain hash
  -- cannot be reversed, and checking it stays cheap at CONNECT.
  password_hash text NOT NULL,
  -- Starts at 1, +1 per credential rotation: the broker closes sessions of older generations.
  generation integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- A tombstone: a deleted device's CONNECT is refused as "not authorized", not "unknown".
  deleted_at timestamptz
);

-- GET /devices: live devices, newest first.
CREATE INDEX devices_live_created ON devices (created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- Gateway instances that hold MQTT sessions; each one renews its heartbeat every few
-- seconds. Sessions of an instance whose heartbeat is old do not count as connected.
CREATE TABLE gateway_instances (
  id uuid PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_sessions (
  -- Deleting a long-dead instance removes its sessions with it.
  instance_id uuid NOT NULL REFERENCES gateway_instances (id) ON DELETE CASCADE,
  session_id text NOT NULL,
  device_id uuid NOT NULL,
  opened_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_id, session_id)
);

CREATE INDEX device_sessions_device ON device_sessions (device_id);
