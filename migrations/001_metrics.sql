-- Time series kept in the metadata database when no INFLUXDB_URL is configured.
-- A point is identified as InfluxDB identifies it: measurement, tag set and time;
-- writing the same point again merges its fields (so a replayed batch is not stored twice).
CREATE TABLE metrics (
  id bigserial PRIMARY KEY,
  measurement text NOT NULL,
  tags jsonb NOT NULL,
  fields jsonb NOT NULL,
  time bigint NOT NULL
);

CREATE UNIQUE INDEX metrics_point ON metrics (measurement, time, tags);
