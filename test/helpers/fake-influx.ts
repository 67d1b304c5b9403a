/**
 * A stand-in for the write API of InfluxDB 3 Core, for tests.
 *
 * What it mimics, and where that comes from:
 *
 * - The JS client `@influxdata/influxdb3-client` 2.1.0 (WriteApiImpl + NodeHttpTransport)
 *   POSTs to `/api/v2/write?bucket=<db>&precision=<ns|us|ms|s>` by default, and to
 *   `/api/v3/write_lp?db=<db>&precision=<nanosecond|...>&no_sync=true` only when
 *   `writeOptions.noSync` is true (`&org=` is prepended when an org is passed). Headers:
 *   `content-type: text/plain; charset=utf-8`, `User-Agent: influxdb3-js/2.1.0`,
 *   `authorization: Token <token>` (or `<authScheme> <token>`, e.g. `Bearer`), and
 *   `content-encoding: gzip` when the UTF-8 body is strictly longer than `gzipThreshold`
 *   (default 1000 bytes; gzip bodies go out chunked, without content-length).
 * - InfluxDB 3 Core (influxdb3_server/src/http.rs) routes POST `/write` (v1),
 *   `/api/v2/write` and `/api/v3/write_lp` to the same writer; `accept_partial` defaults to
 *   true and `precision` to auto. All lines valid: `204` with an empty body. Some lines
 *   invalid: the valid lines ARE written and the answer is `400` with the JSON body
 *   `{"error":"partial write of line protocol occurred","data":[{"original_line":..,
 *   "line_number":..,"error_message":..}]}` (line_number is 1-based over the non-blank,
 *   non-comment lines). With `accept_partial=false` nothing is written and the answer is
 *   `400` `{"error":"parsing failed for write_lp endpoint","data":{...first bad line...}}`.
 *   Core sets no Content-Type on these error bodies (the client then tries JSON anyway).
 * - Authentication (Core, started with auth): missing or wrong token -> `401` with an EMPTY
 *   body (not JSON); a scheme other than Bearer/Token/Basic -> `400`
 *   `{"error": "Authorization header was malformed, ..."}`.
 * - Generic server-side failures in Core are `500` with a plain-text body. Core itself has
 *   no 429/503 on its write path; those come from proxies / Cloud. The `status429` and
 *   `status503` modes answer Core's `{"error":..,"data":null}` shape plus `Retry-After`.
 *
 * Modes (setMode / queueModes):
 * - `ok`: validate and write as Core does (including partial writes for bad lines and
 *   field type conflicts remembered per database/table, like Core's catalog).
 * - `partial400`: like `ok`, but the last otherwise valid line of every request is
 *   rejected too, so each request is a partial write.
 * - `status429` / `status500` / `status503`: nothing written, error answered.
 * - `status401` (Core with a rotated token: empty body), `status403`, `status404` (a
 *   database that does not exist, as a server without auto-create or a proxy answers),
 *   `status413` (a proxy's body limit, HTML body), `status422` (Cloud's answer for points
 *   outside the retention period): nothing written, error answered. Unlike the token
 *   check, these answer whatever the request carries, so a test can script a sequence
 *   with queueModes (e.g. 401, then 404, then ok).
 * - `drop`: the body is read, nothing written, the socket destroyed without an answer
 *   (the client sees `Error: socket hang up`, code `ECONNRESET`).
 * - `hang`: the body is read, nothing written, no answer ever (until close()); the
 *   client gives up with `RequestTimedOutError` after its write timeout. Note that the
 *   client 2.1.0 does not destroy its socket on timeout; close() here does.
 *
 * Latency (setLatencyMs): in `ok`/`partial400` the lines are recorded first and the answer
 * is delayed after, like a slow WAL sync: a client that times out meanwhile has still
 * had its data written (the duplicate-on-retry case).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';

const gunzipAsync = promisify(gunzip);

export type FakeInfluxMode =
  | 'ok'
  | 'partial400'
  | 'status429'
  | 'status500'
  | 'status503'
  | 'status401'
  | 'status403'
  | 'status404'
  | 'status413'
  | 'status422'
  | 'drop'
  | 'hang';

export interface FakeInfluxOptions {
  /** When set, every request must authenticate with this token (Bearer, Token or Basic). */
  token?: string;
  mode?: FakeInfluxMode;
  latencyMs?: number;
  /** Core's --max-http-request-size default is 10 MiB; larger bodies get a 500. */
  maxRequestBytes?: number;
  /** Retry-After seconds sent with 429 / 503. */
  retryAfterSeconds?: number;
}

export interface WriteLineError {
  original_line: string;
  line_number: number;
  error_message: string;
}

export interface RecordedWrite {
  endpoint: 'v1' | 'v2' | 'v3';
  /** path with query string, as received */
  url: string;
  db: string;
  /** the raw precision parameter, if any */
  precision: string | null;
  noSync: boolean;
  acceptPartial: boolean;
  headers: http.IncomingHttpHeaders;
  gzip: boolean;
  /** the mode that answered this request */
  mode: FakeInfluxMode;
  /** non-blank, non-comment lines of the decoded body */
  lines: string[];
  accepted: string[];
  rejected: WriteLineError[];
  /** HTTP status answered, or 'dropped' / 'hung' */
  status: number | 'dropped' | 'hung';
}

export interface FakeInflux {
  /** base URL, e.g. http://127.0.0.1:40123 (use it as the client's `host`) */
  url: string;
  /** every accepted line, in arrival order (all databases) */
  lines: string[];
  /** number of write requests received (any mode, any outcome) */
  readonly requests: number;
  /** one entry per write request, in arrival order */
  writes: RecordedWrite[];
  setMode(mode: FakeInfluxMode): void;
  /** modes used for the next requests, one each, before falling back to setMode's */
  queueModes(...modes: FakeInfluxMode[]): void;
  setLatencyMs(ms: number): void;
  /** forget lines, writes, queued modes and the remembered schema */
  reset(): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Minimal line protocol parsing (test-only; enough to reject what Core rejects
// in the common cases, with Core's wording where known)
// ---------------------------------------------------------------------------

export type LpFieldType = 'float' | 'integer' | 'uinteger' | 'string' | 'boolean';

export interface ParsedLp {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, { type: LpFieldType; value: number | bigint | string | boolean }>;
  /** the timestamp digits as written (precision is the request's), or null */
  timestamp: string | null;
}

class LpError extends Error {}

const BOOL_TRUE = new Set(['t', 'T', 'true', 'True', 'TRUE']);
const BOOL_FALSE = new Set(['f', 'F', 'false', 'False', 'FALSE']);
const FLOAT_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const INT_RE = /^[-+]?\d+i$/;
const UINT_RE = /^\d+u$/;
const TS_RE = /^-?\d+$/;

/** Parses one line of line protocol; throws an Error whose message mimics Core's. */
export function parseLp(line: string): ParsedLp {
  let i = 0;
  const n = line.length;

  // Reads an escaped token up to one of `stops` (unescaped); returns the unescaped text.
  const readToken = (stops: string): string => {
    let out = '';
    while (i < n) {
      const c = line[i]!;
      if (c === '\\' && i + 1 < n) {
        const next = line[i + 1]!;
        if (stops.includes(next) || next === '\\' || next === ',' || next === '=' || next === ' ') {
          out += next;
          i += 2;
          continue;
        }
        out += c;
        i += 1;
        continue;
      }
      if (stops.includes(c)) break;
      out += c;
      i += 1;
    }
    return out;
  };

  const measurement = readToken(', ');
  if (measurement === '') throw new LpError('Invalid measurement was provided');
  if (measurement.endsWith('\\')) {
    throw new LpError('Measurements, tag keys and values, and field keys may not end with a backslash');
  }

  const tags: Record<string, string> = {};
  while (i < n && line[i] === ',') {
    i += 1;
    const rest = line.slice(i);
    const key = readToken('=, ');
    if (key === '') throw new LpError(`Expected tag key, got ${describe(rest)}`);
    if (line[i] !== '=') throw new LpError(`Tag set malformed: could not find equals sign in \`${truncate(rest)}\``);
    i += 1;
    const valueRest = line.slice(i);
    const value = readToken(', ');
    if (value === '') throw new LpError(`Expected tag value, got ${describe(valueRest)}`);
    if (key in tags) throw new LpError(`Must not contain duplicate tags, but \`${key}\` was repeated`);
    tags[key] = value;
  }

  if (i >= n || line[i] !== ' ') {
    if (i >= n) throw new LpError('No fields were provided');
    throw new LpError(`Expected at least one space character, got \`${truncate(line.slice(i))}\``);
  }
  while (i < n && line[i] === ' ') i += 1;

  const fields: ParsedLp['fields'] = {};
  for (;;) {
    const key = readToken('=, ');
    if (key === '' || line[i] !== '=') throw new LpError('No fields were provided');
    i += 1;
    let raw: string;
    let field: ParsedLp['fields'][string];
    if (line[i] === '"') {
      i += 1;
      let s = '';
      let closed = false;
      while (i < n) {
        const c = line[i]!;
        if (c === '\\' && i + 1 < n && (line[i + 1] === '"' || line[i + 1] === '\\')) {
          s += line[i + 1];
          i += 2;
          continue;
        }
        if (c === '"') {
          closed = true;
          i += 1;
          break;
        }
        s += c;
        i += 1;
      }
      if (!closed) throw new LpError('No fields were provided');
      if (Buffer.byteLength(s) > 65536) throw new LpError('String is greater than 64KB');
      field = { type: 'string', value: s };
    } else {
      const start = i;
      while (i < n && line[i] !== ',' && line[i] !== ' ') i += 1;
      raw = line.slice(start, i);
      if (raw === '') throw new LpError('No fields were provided');
      if (INT_RE.test(raw)) {
        const v = BigInt(raw.slice(0, -1));
        if (v > 9223372036854775807n || v < -9223372036854775808n) {
          throw new LpError(`Unable to parse integer value \`${raw.slice(0, -1)}\``);
        }
        field = { type: 'integer', value: v };
      } else if (UINT_RE.test(raw)) {
        const v = BigInt(raw.slice(0, -1));
        if (v > 18446744073709551615n) throw new LpError(`Unable to parse unsigned integer value \`${raw.slice(0, -1)}\``);
        field = { type: 'uinteger', value: v };
      } else if (BOOL_TRUE.has(raw) || BOOL_FALSE.has(raw)) {
        field = { type: 'boolean', value: BOOL_TRUE.has(raw) };
      } else if (FLOAT_RE.test(raw)) {
        field = { type: 'float', value: Number(raw) };
      } else {
        throw new LpError(`Unable to parse floating-point value \`${raw}\``);
      }
    }
    fields[key] = field;
    if (line[i] === ',') {
      i += 1;
      continue;
    }
    break;
  }

  let timestamp: string | null = null;
  if (i < n) {
    if (line[i] !== ' ') {
      throw new LpError(`Could not parse entire line. Found trailing content: \`${truncate(line.slice(i))}\``);
    }
    while (i < n && line[i] === ' ') i += 1;
    const rest = line.slice(i).trimEnd();
    if (rest !== '') {
      if (!TS_RE.test(rest)) {
        if (/^-?\d+/.test(rest)) {
          throw new LpError(`Could not parse entire line. Found trailing content: \`${truncate(rest.replace(/^-?\d+/, ''))}\``);
        }
        throw new LpError(`Unable to parse timestamp value \`${rest}\``);
      }
      timestamp = rest;
    }
  }

  return { measurement, tags, fields, timestamp };
}

function truncate(s: string): string {
  return s.length > 10 ? `${[...s].slice(0, 10).join('')}...` : s;
}

function describe(s: string): string {
  return s === '' ? 'end of input' : `\`${truncate(s)}\``;
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

const DB_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
/** the v1 /write endpoint also takes `<db>/<rp>` */
const DB_RP_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*(\/[A-Za-z0-9_-]+)?$/;

export async function startFakeInflux(opts: FakeInfluxOptions = {}): Promise<FakeInflux> {
  let mode: FakeInfluxMode = opts.mode ?? 'ok';
  let latencyMs = opts.latencyMs ?? 0;
  const queued: FakeInfluxMode[] = [];
  const maxRequestBytes = opts.maxRequestBytes ?? 10 * 1024 * 1024;
  const retryAfter = String(opts.retryAfterSeconds ?? 1);

  const lines: string[] = [];
  const writes: RecordedWrite[] = [];
  let requests = 0;
  /** `${db}\0${table}` -> field -> type, like Core's catalog */
  const schema = new Map<string, Map<string, LpFieldType>>();

  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const later = (fn: () => void, ms: number): void => {
    if (ms <= 0) return fn();
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const answer = (res: http.ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void => {
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(status, headers);
    res.end(body);
  };

  const jsonError = (error: string, data: unknown = null): string => JSON.stringify({ error, data });

  const authenticate = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (opts.token === undefined) return true;
    const header = req.headers.authorization;
    if (!header) {
      answer(res, 401);
      return false;
    }
    const parts = header.split(' ');
    const scheme = parts[0];
    if ((scheme !== 'Bearer' && scheme !== 'Token' && scheme !== 'Basic') || parts.length !== 2 || !parts[1]) {
      answer(
        res,
        400,
        `{"error": "Authorization header was malformed, the request was not in the form of 'Authorization: <auth-scheme> <token>', supported auth-schemes are Bearer, Token and Basic"}`,
      );
      return false;
    }
    let token = parts[1];
    if (scheme === 'Basic') {
      const decoded = Buffer.from(token, 'base64').toString('utf8');
      const idx = decoded.lastIndexOf(':');
      token = idx >= 0 ? decoded.slice(idx + 1) : '';
    }
    if (token !== opts.token) {
      answer(res, 401);
      return false;
    }
    return true;
  };

  const readBody = (req: http.IncomingMessage): Promise<Buffer | 'too-large'> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxRequestBytes) tooLarge = true;
        else chunks.push(c);
      });
      req.on('end', () => resolve(tooLarge ? 'too-large' : Buffer.concat(chunks)));
      req.on('error', reject);
    });

  const handleWrite = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    endpoint: RecordedWrite['endpoint'],
    url: URL,
  ): Promise<void> => {
    requests += 1;
    const current = queued.length > 0 ? queued.shift()! : mode;

    const q = url.searchParams;
    const db = (endpoint === 'v2' ? q.get('bucket') : q.get('db')) ?? '';
    const precision = q.get('precision');
    const noSync = q.get('no_sync') === 'true';
    const acceptPartial = endpoint === 'v3' ? q.get('accept_partial') !== 'false' : true;
    const encoding = req.headers['content-encoding'];
    const record: RecordedWrite = {
      endpoint,
      url: req.url ?? '',
      db,
      precision,
      noSync,
      acceptPartial,
      headers: req.headers,
      gzip: encoding === 'gzip',
      mode: current,
      lines: [],
      accepted: [],
      rejected: [],
      status: 0,
    };
    writes.push(record);

    if (!authenticate(req, res)) {
      record.status = res.statusCode;
      req.resume();
      return;
    }

    const raw = await readBody(req);

    if (current === 'drop') {
      record.status = 'dropped';
      req.socket.destroy();
      return;
    }
    if (current === 'hang') {
      record.status = 'hung';
      return; // the socket is destroyed by close()
    }
    const reply = (status: number, body = '', headers: Record<string, string> = {}): void => {
      record.status = status;
      later(() => answer(res, status, body, headers), latencyMs);
    };
    if (current === 'status429') {
      return reply(429, jsonError('too many requests, please try again later'), { 'retry-after': retryAfter });
    }
    if (current === 'status503') {
      return reply(503, jsonError('this service is overloaded, please try again later'), { 'retry-after': retryAfter });
    }
    if (current === 'status401') return reply(401);
    if (current === 'status403') return reply(403, jsonError('token does not have write permission for this database'));
    if (current === 'status404') return reply(404, jsonError(`database not found: ${db}`));
    if (current === 'status413') {
      return reply(413, '<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>', {
        'content-type': 'text/html',
      });
    }
    if (current === 'status422') {
      return reply(
        422,
        JSON.stringify({ code: 'unprocessable entity', message: 'failure writing points to database: partial write: points beyond retention policy dropped=1' }),
        { 'content-type': 'application/json' },
      );
    }
    if (current === 'status500') {
      return reply(500, 'write buffer error: simulated failure (fake-influx mode status500)');
    }

    // --- request validation, in Core's order; wording from Core's http.rs except where noted ---
    if (endpoint === 'v3' && !q.has('db')) return reply(400, "missing query parameter 'db'");
    if (endpoint !== 'v3' && db === '') {
      // Core answers this from its v1/v2 parameter parser as {"error":..,"data":null}; wording not verified
      return reply(400, jsonError(`missing ${endpoint === 'v2' ? 'bucket' : 'db'} value`));
    }
    if (db === '') return reply(400, jsonError('db name cannot be empty'));
    if (!(endpoint === 'v1' ? DB_RP_NAME_RE : DB_NAME_RE).test(db)) {
      return reply(
        400,
        jsonError(
          /^[A-Za-z0-9]/.test(db)
            ? 'invalid character in database name: must be ASCII, containing only letters, numbers, underscores, or hyphens'
            : 'db name did not start with a number or letter',
        ),
      );
    }
    if (raw === 'too-large') return reply(500, `max request size (${maxRequestBytes} bytes) exceeded`);
    let body: Buffer = raw;
    if (encoding !== undefined && encoding !== 'identity' && encoding !== 'gzip') {
      return reply(400, `unacceptable content-encoding: ${encoding}`);
    }
    if (encoding === 'gzip') {
      try {
        body = await gunzipAsync(raw);
      } catch (e) {
        return reply(500, `error decoding gzip stream: ${(e as Error).message}`);
      }
      if (body.length > maxRequestBytes) return reply(500, `max request size (${maxRequestBytes} bytes) exceeded`);
    }
    const text = body.toString('utf8');
    if (Buffer.compare(Buffer.from(text, 'utf8'), body) !== 0) {
      return reply(500, 'body content is not valid utf8: invalid utf-8 sequence');
    }

    // --- line by line, like Core's validator ---
    const candidates = text.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
    record.lines = candidates;
    const pendingSchema = new Map<string, Map<string, LpFieldType>>();
    const typeOf = (table: string, field: string): LpFieldType | undefined =>
      pendingSchema.get(table)?.get(field) ?? schema.get(`${db}\0${table}`)?.get(field);
    const okLines: { line: string; lineNumber: number }[] = [];
    const errors: WriteLineError[] = [];

    candidates.forEach((line, idx) => {
      const lineNumber = idx + 1;
      let parsed: ParsedLp;
      try {
        parsed = parseLp(line);
      } catch (e) {
        errors.push({ original_line: line, line_number: lineNumber, error_message: (e as Error).message });
        return;
      }
      for (const [name, f] of Object.entries(parsed.fields)) {
        const expected = typeOf(parsed.measurement, name);
        if (expected !== undefined && expected !== f.type) {
          errors.push({
            original_line: line,
            line_number: lineNumber,
            error_message: `invalid column type for column '${name}', expected iox::column_type::field::${expected}, got iox::column_type::field::${f.type}`,
          });
          return;
        }
      }
      let table = pendingSchema.get(parsed.measurement);
      if (!table) pendingSchema.set(parsed.measurement, (table = new Map()));
      for (const [name, f] of Object.entries(parsed.fields)) table.set(name, f.type);
      okLines.push({ line, lineNumber });
    });

    if (current === 'partial400' && okLines.length > 0) {
      const victim = okLines.pop()!;
      errors.push({
        original_line: victim.line,
        line_number: victim.lineNumber,
        error_message: 'line rejected by fake-influx mode partial400',
      });
      errors.sort((a, b) => a.line_number - b.line_number);
    }

    if (errors.length > 0 && !acceptPartial) {
      return reply(400, jsonError('parsing failed for write_lp endpoint', errors[0]));
    }
    if (candidates.length === 0) {
      // Core: WriteBufferError::EmptyWrite -> 400 plain text; wording not verified
      return reply(400, 'write buffer error: no lines were provided in the write request');
    }

    // write what is valid
    for (const [table, fields] of pendingSchema) {
      const key = `${db}\0${table}`;
      let known = schema.get(key);
      if (!known) schema.set(key, (known = new Map()));
      for (const [f, t] of fields) if (!known.has(f)) known.set(f, t);
    }
    for (const { line } of okLines) {
      lines.push(line);
      record.accepted.push(line);
    }
    record.rejected = errors;

    if (errors.length === 0) return reply(204);
    // Core reports at most 100 rejected points
    return reply(400, jsonError('partial write of line protocol occurred', errors.slice(0, 100)));
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake-influx.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const fail = (e: unknown): void => {
      if (!res.headersSent && !res.destroyed) answer(res, 500, `fake-influx error: ${(e as Error).message}`);
    };
    if (method === 'POST' && path === '/api/v2/write') return void handleWrite(req, res, 'v2', url).catch(fail);
    if (method === 'POST' && path === '/api/v3/write_lp') return void handleWrite(req, res, 'v3', url).catch(fail);
    if (method === 'POST' && path === '/write') return void handleWrite(req, res, 'v1', url).catch(fail);
    req.resume();
    if (method === 'GET' && (path === '/health' || path === '/api/v3/health' || path === '/api/v1/health')) {
      return answer(res, 200, 'OK');
    }
    if ((method === 'GET' || method === 'POST') && path === '/ping') {
      return answer(res, 200, JSON.stringify({ version: '3.0.0-fake', revision: 'fake', process_id: '00000000-0000-0000-0000-000000000000' }), {
        'content-type': 'application/json',
        'x-influxdb-version': '3.0.0-fake',
        'x-influxdb-build': 'Core',
      });
    }
    return answer(res, 404, 'not found');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    lines,
    get requests() {
      return requests;
    },
    writes,
    setMode(m) {
      mode = m;
    },
    queueModes(...modes) {
      queued.push(...modes);
    },
    setLatencyMs(ms) {
      latencyMs = ms;
    },
    reset() {
      lines.length = 0;
      writes.length = 0;
      queued.length = 0;
      requests = 0;
      schema.clear();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await done;
    },
  };
}
