/**
 * Proves the two write sinks used by the tests answer the real `@influxdata/influxdb3-client`
 * the way the project expects:
 * - test/helpers/fake-influx.ts, a stand-in for InfluxDB 3 Core's write API (with faults);
 * - test/helpers/victoria.ts, a real victoria-metrics process storing line protocol.
 *
 * Outside CI the victoria-metrics part is skipped when the binary is missing; with CI=true a
 * missing binary fails the run (CI must `apt-get install -y victoria-metrics`).
 */
import {
  HttpError,
  InfluxDBClient,
  RequestTimedOutError,
  setLogger,
  type Logger,
} from '@influxdata/influxdb3-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeInflux, type FakeInflux } from '../helpers/fake-influx.js';
import { startVictoria, victoriaAvailable, type Victoria } from '../helpers/victoria.js';

const TOKEN = 'sink-test-token';
const DB = 'telemetry';

/** The rejection of a write, which must fail. */
async function failureOf(write: Promise<unknown>): Promise<unknown> {
  try {
    await write;
  } catch (e) {
    return e;
  }
  throw new Error('expected the write to fail, it succeeded');
}

function httpError(e: unknown): HttpError {
  expect(e).toBeInstanceOf(HttpError);
  return e as HttpError;
}

/** n lines whose joined body is over the client's default 1000-byte gzip threshold */
function bulkLines(measurement: string, n: number, t0: bigint): string[] {
  return Array.from(
    { length: n },
    (_, i) => `${measurement},device=dev-${String(i).padStart(3, '0')},site=plant-north temperature=${20 + i / 10},seq=${i}i ${t0 + BigInt(i) * 1_000_000n}`,
  );
}

// The client logs every failed write to the console; the failures here are on purpose.
let previousLogger: Logger | undefined;
beforeAll(() => {
  previousLogger = setLogger({ error() {}, warn() {} });
});
afterAll(() => {
  if (previousLogger) setLogger(previousLogger);
});

describe('fake InfluxDB 3 write API, driven by the real client', () => {
  let fake: FakeInflux;
  let client: InfluxDBClient;

  beforeAll(async () => {
    fake = await startFakeInflux({ token: TOKEN });
    client = new InfluxDBClient({ host: fake.url, token: TOKEN, database: DB });
  });
  afterAll(async () => {
    await client?.close();
    await fake?.close();
  });
  beforeEach(() => {
    fake.reset();
    fake.setMode('ok');
    fake.setLatencyMs(0);
  });

  it('records the lines of a small write: POST /api/v2/write, Token auth, plain body', async () => {
    const lines = ['cpu,host=a usage=1.5 1700000000000000000', 'cpu,host=b usage=2.5,busy=true,name="x y" 1700000000000000001'];
    await client.write(lines);

    expect(fake.lines).toEqual(lines);
    expect(fake.requests).toBe(1);
    const w = fake.writes[0]!;
    expect(w.endpoint).toBe('v2');
    expect(w.url).toBe(`/api/v2/write?bucket=${DB}&precision=ns`);
    expect(w.db).toBe(DB);
    expect(w.status).toBe(204);
    expect(w.gzip).toBe(false);
    expect(w.headers.authorization).toBe(`Token ${TOKEN}`);
    expect(w.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(w.headers['user-agent']).toBe('influxdb3-js/2.1.0');
    expect(w.headers['content-length']).toBe(String(Buffer.byteLength(lines.join('\n'))));
  });

  it('gzips a body over gzipThreshold (default 1000 bytes) and the fake gunzips it', async () => {
    const lines = bulkLines('env', 30, 1_700_000_000_000_000_000n);
    expect(Buffer.byteLength(lines.join('\n'))).toBeGreaterThan(1000);
    await client.write(lines);

    const w = fake.writes[0]!;
    expect(w.gzip).toBe(true);
    expect(w.headers['content-encoding']).toBe('gzip');
    expect(w.headers['content-length']).toBeUndefined(); // gzip bodies are sent chunked
    expect(w.status).toBe(204);
    expect(fake.lines).toEqual(lines);
  });

  it('does not gzip a body of exactly gzipThreshold bytes', async () => {
    const line = 'm v=1';
    await client.write(line, DB, undefined, { gzipThreshold: Buffer.byteLength(line) });
    expect(fake.writes[0]!.gzip).toBe(false);
    await client.write(line, DB, undefined, { gzipThreshold: Buffer.byteLength(line) - 1 });
    expect(fake.writes[1]!.gzip).toBe(true);
    expect(fake.lines).toEqual([line, line]);
  });

  it('sends noSync writes to /api/v3/write_lp and honours precision and authScheme', async () => {
    const bearer = new InfluxDBClient({ host: fake.url, token: TOKEN, authScheme: 'Bearer', database: DB });
    try {
      await bearer.write('cpu,host=c usage=3 1700000000', DB, undefined, { noSync: true, precision: 's' });
    } finally {
      await bearer.close();
    }
    const w = fake.writes[0]!;
    expect(w.endpoint).toBe('v3');
    expect(w.url).toBe(`/api/v3/write_lp?db=${DB}&precision=second&no_sync=true`);
    expect(w.noSync).toBe(true);
    expect(w.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(fake.lines).toEqual(['cpu,host=c usage=3 1700000000']);
  });

  it('answers a wrong token with 401 and an empty body, as Core does', async () => {
    const wrong = new InfluxDBClient({ host: fake.url, token: 'not-the-token', database: DB });
    try {
      const err = httpError(await failureOf(wrong.write('cpu usage=1')));
      expect(err.statusCode).toBe(401);
      expect(err.body).toBe('');
      expect(err.message).toBe('401 Unauthorized : ');
    } finally {
      await wrong.close();
    }
    expect(fake.lines).toEqual([]);
  });

  it('writes the valid lines of a batch and answers 400 "partial write" for the bad ones', async () => {
    const err = httpError(
      await failureOf(client.write(['cpu,host=b val=2 155', 'cpu,host=a val= 123', 'cpu,host=b val=5 199'])),
    );
    expect(err.statusCode).toBe(400);
    expect(err.json).toEqual({
      error: 'partial write of line protocol occurred',
      data: [{ original_line: 'cpu,host=a val= 123', line_number: 2, error_message: 'No fields were provided' }],
    });
    expect(err.message).toBe(
      'partial write of line protocol occurred:\n\tline 2: No fields were provided (cpu,host=a val= 123)',
    );
    // the valid lines ARE written (Core's accept_partial=true default)
    expect(fake.lines).toEqual(['cpu,host=b val=2 155', 'cpu,host=b val=5 199']);
  });

  it('rejects a field whose type conflicts with what the table already has', async () => {
    await client.write('home,room=kitchen temp=21.5 1');
    const err = httpError(await failureOf(client.write(['home,room=sun temp="hot" 2', 'home,room=sun temp=30 3'])));
    expect(err.statusCode).toBe(400);
    expect(err.json.data).toEqual([
      {
        original_line: 'home,room=sun temp="hot" 2',
        line_number: 1,
        error_message:
          "invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::string",
      },
    ]);
    expect(fake.lines).toEqual(['home,room=kitchen temp=21.5 1', 'home,room=sun temp=30 3']);
  });

  it('partial400 mode rejects the last line of each request and keeps the others', async () => {
    fake.setMode('partial400');
    const err = httpError(await failureOf(client.write(['m v=1 1', 'm v=2 2', 'm v=3 3'])));
    expect(err.statusCode).toBe(400);
    expect(err.json.error).toBe('partial write of line protocol occurred');
    expect(err.json.data).toHaveLength(1);
    expect(err.json.data[0]).toMatchObject({ original_line: 'm v=3 3', line_number: 3 });
    expect(fake.lines).toEqual(['m v=1 1', 'm v=2 2']);
  });

  it('status429 and status503 answer JSON errors with Retry-After; nothing is written', async () => {
    fake.setMode('status429');
    const tooMany = httpError(await failureOf(client.write('m v=1 1')));
    expect(tooMany.statusCode).toBe(429);
    expect(tooMany.json).toEqual({ error: 'too many requests, please try again later', data: null });
    expect(tooMany.headers?.['retry-after']).toBe('1');

    fake.setMode('status503');
    const unavailable = httpError(await failureOf(client.write('m v=1 1')));
    expect(unavailable.statusCode).toBe(503);
    expect(unavailable.message).toBe('this service is overloaded, please try again later');
    expect(unavailable.headers?.['retry-after']).toBe('1');

    expect(fake.lines).toEqual([]);
  });

  it('status500 answers a plain-text error like Core', async () => {
    fake.setMode('status500');
    const err = httpError(await failureOf(client.write('m v=1 1')));
    expect(err.statusCode).toBe(500);
    expect(err.json).toBeUndefined();
    expect(err.body).toBe('write buffer error: simulated failure (fake-influx mode status500)');
    expect(err.message).toBe('500 Internal Server Error : write buffer error: simulated failure (fake-influx mode status500)');
    expect(fake.lines).toEqual([]);
  });

  it('drop destroys the connection: a plain socket error (ECONNRESET), not an HttpError', async () => {
    fake.setMode('drop');
    const err = (await failureOf(client.write('m v=1 1'))) as NodeJS.ErrnoException;
    expect(err).not.toBeInstanceOf(HttpError);
    expect(err.code).toBe('ECONNRESET');
    expect(err.message).toBe('socket hang up');
    expect(fake.writes[0]!.status).toBe('dropped');
    expect(fake.lines).toEqual([]);
  });

  it('hang never answers: the client gives up with RequestTimedOutError', async () => {
    fake.setMode('hang');
    const started = Date.now();
    const err = await failureOf(client.write('m v=1 1', DB, undefined, { timeout: 300 }));
    expect(err).toBeInstanceOf(RequestTimedOutError);
    expect((err as Error).message).toBe('Request timed out');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(fake.writes[0]!.status).toBe('hung');
    expect(fake.lines).toEqual([]);
  });

  it('latency delays the answer after the data is written (timeout, yet data stored)', async () => {
    fake.setLatencyMs(500);
    const err = await failureOf(client.write('slow v=1 1', DB, undefined, { timeout: 150 }));
    expect(err).toBeInstanceOf(RequestTimedOutError);
    expect(fake.lines).toEqual(['slow v=1 1']);

    fake.setLatencyMs(50);
    await client.write('slow v=2 2');
    expect(fake.lines).toEqual(['slow v=1 1', 'slow v=2 2']);
  });

  it('the client never retries: one request per failed write; queued modes apply in order', async () => {
    fake.queueModes('status503', 'status500', 'drop');
    expect(httpError(await failureOf(client.write('q v=1 1'))).statusCode).toBe(503);
    expect(httpError(await failureOf(client.write('q v=1 1'))).statusCode).toBe(500);
    expect(((await failureOf(client.write('q v=1 1'))) as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    await client.write('q v=1 1'); // back to the current mode, ok
    expect(fake.requests).toBe(4);
    expect(fake.writes.map((w) => w.status)).toEqual([503, 500, 'dropped', 204]);
    expect(fake.lines).toEqual(['q v=1 1']);
  });
});

const haveVictoria = victoriaAvailable();
const inCi = process.env.CI === 'true';
const skipVictoria = !haveVictoria && !inCi;
if (skipVictoria) {
  console.warn('victoria-metrics tests skipped: binary not found (apt-get install -y victoria-metrics)');
}

describe.skipIf(skipVictoria)(
  skipVictoria
    ? 'victoria-metrics sink (SKIPPED: victoria-metrics binary not found; apt-get install -y victoria-metrics)'
    : 'victoria-metrics sink, driven by the real client',
  () => {
    let vm: Victoria;
    let client: InfluxDBClient;

    beforeAll(async () => {
      // with CI=true and no binary this throws, failing the run instead of skipping
      vm = await startVictoria();
      client = new InfluxDBClient({ host: vm.url, token: TOKEN, database: DB });
    }, 60_000);
    afterAll(async () => {
      await client?.close();
      await vm?.close();
    }, 30_000);

    it('stores tags and values; ns timestamps come back truncated to ms', async () => {
      const nowMs = BigInt(Date.now() - 60_000);
      const t = nowMs * 1_000_000n + 123_456n; // sub-millisecond part is lost
      const year2000 = 946_684_800_000_000_000n;
      await client.write([
        `vm_cpu,host=a,region=eu usage=1.5,cores=8i,on=true,off=false,label="text" ${t}`,
        `vm_cpu,host=b usage=2.25 ${year2000}`,
      ]);
      await vm.flush();

      expect(await vm.exportLines('{__name__=~"vm_cpu_.+"}')).toEqual(
        [
          `vm_cpu_usage{host="a",region="eu"} 1.5 ${nowMs}`,
          `vm_cpu_cores{host="a",region="eu"} 8 ${nowMs}`,
          `vm_cpu_on{host="a",region="eu"} 1 ${nowMs}`,
          `vm_cpu_off{host="a",region="eu"} 0 ${nowMs}`,
          `vm_cpu_label{host="a",region="eu"} 0 ${nowMs}`, // strings are stored as 0
          `vm_cpu_usage{host="b"} 2.25 946684800000`, // year 2000 kept with 100y retention
        ].sort(),
      );
    });

    it('accepts a gzip body from the client', async () => {
      const t0 = BigInt(Date.now() - 30_000) * 1_000_000n;
      const lines = bulkLines('vm_gz', 40, t0);
      expect(Buffer.byteLength(lines.join('\n'))).toBeGreaterThan(1000);
      await client.write(lines);
      await vm.flush();

      const exported = await vm.exportLines('{__name__=~"vm_gz_.+"}');
      expect(exported).toHaveLength(80); // 2 fields x 40 lines
      expect(exported).toContain(`vm_gz_temperature{device="dev-007",site="plant-north"} 20.7 ${(t0 + 7_000_000n) / 1_000_000n}`);
      expect(exported).toContain(`vm_gz_seq{device="dev-039",site="plant-north"} 39 ${(t0 + 39_000_000n) / 1_000_000n}`);
    });

    it('drops samples outside [now - retention, now + 2d] silently (204, warning in its log)', async () => {
      const nowS = Math.floor(Date.now() / 1000);
      const opts = { precision: 's' as const };
      await client.write(`vm_range,when=ancient v=2 ${nowS - 101 * 366 * 86400}`, DB, undefined, opts);
      await client.write(`vm_range,when=future v=1 ${nowS + 10 * 86400}`, DB, undefined, opts);
      await client.write(`vm_range,when=now v=3 ${nowS}`, DB, undefined, opts);
      await vm.flush();
      expect(await vm.exportLines('{__name__="vm_range_v"}')).toEqual([`vm_range_v{when="now"} 3 ${nowS * 1000}`]);
      expect(vm.logs()).toContain('too small timestamp');
      expect(vm.logs()).toContain('too big timestamp');
    });

    it('skips unparsable lines but still answers 204 (no partial-write error)', async () => {
      const nowS = Math.floor(Date.now() / 1000);
      await client.write([`vm_lenient v=1 ${nowS}`, 'vm_lenient garbage', `vm_lenient v=2 ${nowS + 1}`], DB, undefined, {
        precision: 's',
      });
      await vm.flush();
      expect(await vm.exportLines('{__name__="vm_lenient_v"}')).toEqual([
        `vm_lenient_v{} 1 ${nowS * 1000}`,
        `vm_lenient_v{} 2 ${(nowS + 1) * 1000}`,
      ]);
    });

    it('has no /api/v3/write_lp: a noSync write fails with 400', async () => {
      const err = httpError(await failureOf(client.write('vm_v3 v=1', DB, undefined, { noSync: true })));
      expect(err.statusCode).toBe(400);
    });
  },
);
