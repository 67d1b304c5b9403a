/**
 * A real VictoriaMetrics single-node process, as an InfluxDB line protocol sink for tests.
 *
 * Install: Debian package `victoria-metrics` (`apt-get install -y victoria-metrics`), which
 * ships the server as `/usr/bin/victoria-metrics` (upstream release archives call it
 * `victoria-metrics-prod`). The binary is looked up as: $VICTORIA_METRICS_BIN if set, then
 * `victoria-metrics` / `victoria-metrics-prod` on PATH, then the Debian package's path.
 * Debian bookworm ships 1.79.5; the behaviour below was checked against that version.
 *
 * How it maps line protocol (InfluxDB-compatible endpoints `/write`, `/api/v2/write`,
 * `/influx/write`, `/influx/api/v2/write`; there is NO `/api/v3/write_lp`: it answers
 * 400 "unsupported path", so an influxdb3 client with `noSync: true` cannot write to it):
 * - one series per field: metric name `{measurement}_{field}` (separator from
 *   -influxMeasurementFieldSeparator, default `_`); tags become labels as they are.
 * - label `db` = the `?db=` query parameter (only when the line has no `db` tag). The v2
 *   `?bucket=` parameter, which is what the influxdb3 JS client sends, is IGNORED by 1.79:
 *   series written by that client carry no `db` label at all (an empty label is dropped).
 * - values are float64: integers (`1i`, `1u`) become plain numbers, booleans 1/0, and
 *   string fields are stored as 0 (a series with value 0, not skipped).
 * - timestamps are stored in MILLISECONDS: `precision` is honoured, then the value is
 *   truncated to ms (-influxTrimTimestamp=1ms), so ns/us detail is lost. A line without a
 *   timestamp gets the server's current time.
 * - a line that does not parse is skipped (logged as an error) and the request still gets
 *   204: VictoriaMetrics has no partial-write error, unlike InfluxDB 3.
 * - samples older than now - retentionPeriod are dropped ("too small timestamp ... outside
 *   the retention"), and samples newer than now + 2 days are dropped ("too big timestamp");
 *   both only as a warning in the server log (only the first dropped sample of each request
 *   is logged), the write request still gets 204. Hence the
 *   100-year retention used here (year-2000 data is kept; anything before
 *   now - 100y is not).
 * - the Authorization header is ignored (no -httpAuth.* flags set).
 * - freshly written samples are not visible to /api/v1/export until they are flushed
 *   (VictoriaMetrics buffers them for ~1-2 s): call flush() (GET /internal/force_flush)
 *   between writing and exportLines().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

const BINARY_NAMES = ['victoria-metrics', 'victoria-metrics-prod'];
/** where the Debian package puts it, for environments whose PATH lacks /usr/bin */
const DEBIAN_PACKAGE_BINARY = '/usr/bin/victoria-metrics';

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Path of the victoria-metrics server binary, or null when it is not installed. */
export function victoriaBinary(): string | null {
  const fromEnv = process.env.VICTORIA_METRICS_BIN;
  if (fromEnv) return isExecutable(fromEnv) ? fromEnv : null;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const name of BINARY_NAMES) {
      const candidate = join(dir, name);
      if (isExecutable(candidate)) return candidate;
    }
  }
  return isExecutable(DEBIAN_PACKAGE_BINARY) ? DEBIAN_PACKAGE_BINARY : null;
}

/** Whether the victoria-metrics binary is present (tests skip on false outside CI). */
export function victoriaAvailable(): boolean {
  return victoriaBinary() !== null;
}

export interface ExportedSeries {
  metric: Record<string, string>;
  values: number[];
  /** milliseconds since the epoch */
  timestamps: number[];
}

export interface Victoria {
  /** base URL, e.g. http://127.0.0.1:41234 (usable as an influx client's host) */
  url: string;
  /**
   * Every stored sample matching the series selector (default: all series), one string per
   * sample, `name{label="value",...} value timestampMs`, labels sorted by name, lines sorted.
   * Call flush() first.
   */
  exportLines(match?: string): Promise<string[]>;
  /** the raw JSON lines of /api/v1/export */
  exportSeries(match?: string): Promise<ExportedSeries[]>;
  /** makes everything written so far visible to queries/export */
  flush(): Promise<void>;
  /** the tail of the server's log (warnings about dropped samples land here) */
  logs(): string;
  close(): Promise<void>;
}

export interface StartVictoriaOptions {
  /** -retentionPeriod; default 100y */
  retentionPeriod?: string;
  /** extra command-line flags, e.g. ['-influxSkipSingleField'] */
  extraArgs?: string[];
  /** how long to wait for /health; default 20 s */
  startTimeoutMs?: number;
}

const ALL_SERIES = '{__name__=~".+"}';
const LOG_TAIL_BYTES = 64 * 1024;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** `name{a="1",b="2"} value ts` for each sample of a series */
function sampleLines(s: ExportedSeries): string[] {
  const { __name__: name = '', ...labels } = s.metric;
  const labelText = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabelValue(labels[k]!)}"`)
    .join(',');
  return s.values.map((v, i) => `${name}{${labelText}} ${String(v)} ${String(s.timestamps[i])}`);
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // a test run that dies without close() must not leave servers behind
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

export async function startVictoria(opts: StartVictoriaOptions = {}): Promise<Victoria> {
  const binary = victoriaBinary();
  if (!binary) {
    throw new Error(
      'victoria-metrics binary not found (looked at $VICTORIA_METRICS_BIN, PATH and the Debian package path); install it with `apt-get install -y victoria-metrics`',
    );
  }
  installExitHook();
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;

  // The port is found by binding port 0 and releasing it, so another process can take it
  // in between: retry with a new port when the server dies at start-up.
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const dataDir = mkdtempSync(join(tmpdir(), 'victoria-test-'));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const args = [
      `-httpListenAddr=127.0.0.1:${port}`,
      `-storageDataPath=${dataDir}`,
      `-retentionPeriod=${opts.retentionPeriod ?? '100y'}`,
      // backfilled (old) samples must not be hidden by the response cache
      '-search.disableCache',
      '-memory.allowedBytes=256MiB',
      ...(opts.extraArgs ?? []),
    ];
    let log = '';
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    const append = (chunk: Buffer): void => {
      log += chunk.toString('utf8');
      if (log.length > LOG_TAIL_BYTES) log = log.slice(-LOG_TAIL_BYTES);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    let exited = false;
    const exitPromise = new Promise<void>((resolve) => {
      child.once('exit', () => {
        exited = true;
        running.delete(child);
        resolve();
      });
      child.once('error', (e) => {
        append(Buffer.from(`spawn error: ${e.message}\n`));
        exited = true;
        running.delete(child);
        resolve();
      });
    });

    const stop = async (): Promise<void> => {
      if (!exited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exitPromise;
        clearTimeout(killer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    };

    const deadline = Date.now() + startTimeoutMs;
    let healthy = false;
    while (!exited && Date.now() < deadline) {
      try {
        const res = await fetch(`${url}/health`);
        if (res.ok && (await res.text()).trim() === 'OK') {
          healthy = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    if (!healthy) {
      await stop();
      lastError = new Error(`victoria-metrics did not become healthy on ${url}; log tail:\n${log.slice(-4000)}`);
      continue;
    }

    const exportSeries = async (match = ALL_SERIES): Promise<ExportedSeries[]> => {
      const params = new URLSearchParams();
      params.append('match[]', match);
      // the default end is "now"; accepted samples may be up to 2 days ahead
      params.append('end', String(Math.floor(Date.now() / 1000) + 3 * 86400));
      const res = await fetch(`${url}/api/v1/export?${params.toString()}`);
      const text = await res.text();
      if (!res.ok) throw new Error(`export failed: ${res.status} ${text}`);
      return text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as ExportedSeries);
    };

    return {
      url,
      exportSeries,
      async exportLines(match = ALL_SERIES) {
        return (await exportSeries(match)).flatMap(sampleLines).sort();
      },
      async flush() {
        const res = await fetch(`${url}/internal/force_flush`);
        await res.text();
        if (!res.ok) throw new Error(`force_flush failed: ${res.status}`);
      },
      logs: () => log,
      close: stop,
    };
  }
  throw lastError ?? new Error('victoria-metrics failed to start');
}
