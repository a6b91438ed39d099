import http, { type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Signer } from '../../src/crypto/keys.ts';
import { silentLogger } from '../../src/log.ts';
import { authDigest, formatChallenge, formatCredentials, NonceBook, parseChallenge } from './auth.ts';
import { createPayingClient, type DownloadProgress, nothingReceived } from './client.ts';
import { DownloadInterruptedError, HttpStatusError, ServedClaimRefusedError, TariffRefusedError } from './errors.ts';
import { MEMORY_CHANNEL, MemoryPayments, MemoryServedLog } from './memory-payments.ts';
import { pseudoRandomSha256, startOrigin } from './origin.ts';
import { startMeteredProxy, type ClientStats, type MeteredProxyOptions } from './proxy.ts';
import { fetchTariff } from './tariff.ts';

const UNIT = 102_400;
const PRICE = 1_000_000_000n;
const ALICE = Signer.random();
const BOB = Signer.random();
const MALLORY = Signer.random();

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type SetupOptions = { delayMs?: number; idleCutoffMs?: number; allow?: string[] } & Pick<MeteredProxyOptions, 'nonceTtlMs' | 'maxNonces'>;

async function setup({ delayMs, idleCutoffMs, allow = [], ...proxyOptions }: SetupOptions = {}) {
  const origin = await startOrigin();
  cleanups.push(origin.close);
  const payments = new MemoryPayments({ delayMs });
  const proxy = await startMeteredProxy({ price: PRICE, payments, idleCutoffMs: idleCutoffMs ?? 10_000, upstream: { allowed: [new URL(origin.url).host, ...allow] }, logger: silentLogger, ...proxyOptions });
  cleanups.push(proxy.close);
  /** A client paying as `signer`; `claims` makes it name another address (an impostor). */
  const clientFor = (signer: Signer, claims: string = signer.address) => {
    const payer = payments.payer(claims);
    const client = createPayingClient({ proxyUrl: proxy.url, clientAddress: claims, channel: payer.channel, price: PRICE, payments: payer, sign: (d) => signer.sign(d) });
    return { payer, client };
  };
  const statsOf = (signer: Signer): ClientStats | undefined => proxy.stats().clients.find((c) => c.client === signer.address);
  return { origin, payments, proxy, clientFor, statsOf };
}

/** Downloads, going on after each 402 or interruption (as the payer role does), at most 5 times. */
async function downloadRetrying(client: ReturnType<typeof createPayingClient>, url: string, options: Parameters<ReturnType<typeof createPayingClient>['download']>[1]) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.download(url, options);
    } catch (error) {
      if (attempt >= 5 || !(error instanceof DownloadInterruptedError || (error instanceof HttpStatusError && error.status === 402))) throw error;
    }
  }
}

/** Polls until `check` passes, for at most 10 s. */
async function eventually(check: () => void): Promise<void> {
  await expect.poll(() => {
    check();
    return true;
  }, { timeout: 10_000, interval: 10 }).toBe(true);
}

interface Answer {
  status: number;
  /** The nonce of the proxy's challenge, on a 407. */
  nonce: string | undefined;
  /** Body bytes (forwarding) or tunnel bytes (CONNECT) that came with the answer. */
  bytes: number;
}

/** A raw request to the proxy (what a client that does not play by the rules sends). */
async function ask(proxyUrl: string, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const proxy = new URL(proxyUrl);
  const request = http.request({ host: proxy.hostname, port: proxy.port, method, path, headers, agent: false });
  request.end();
  const [response, socket, head] = (await once(request, method === 'CONNECT' ? 'connect' : 'response')) as [IncomingMessage, Duplex?, Buffer?];
  let bytes = head?.length ?? 0;
  // Refusals close the connection: read to the end to see that nothing else comes.
  if (response.statusCode !== 200) for await (const chunk of (socket ?? response) as AsyncIterable<Buffer>) bytes += chunk.length;
  socket?.destroy();
  response.destroy();
  request.destroy();
  return { status: response.statusCode ?? 0, nonce: parseChallenge(response.headers['proxy-authenticate']), bytes };
}

async function statusOf(proxyUrl: string, method: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return (await ask(proxyUrl, method, path, headers)).status;
}

/** `Proxy-Authorization` headers as a client would send them, built from a fresh challenge. */
async function signedHeaders(proxyUrl: string, signer: Signer, claims: string = signer.address): Promise<Record<string, string>> {
  const { nonce } = await ask(proxyUrl, 'GET', 'http://127.0.0.1/');
  if (nonce === undefined) throw new Error('no challenge');
  return signedFor(proxyUrl, signer, nonce, claims);
}

function signedFor(proxyUrl: string, signer: Signer, nonce: string, claims: string = signer.address, channel = MEMORY_CHANNEL): Record<string, string> {
  const sig = signer.sign(authDigest(nonce, new URL(proxyUrl).host, channel));
  return { 'proxy-authorization': formatCredentials({ address: claims, channel, nonce, sig }) };
}

describe.each(['forward', 'connect'] as const)('metered proxy, %s mode', (mode) => {
  it('delivers a few MB intact, paying every started unit and never more than one unit ahead', async () => {
    const { origin, proxy, clientFor, statsOf } = await setup();
    const { client } = clientFor(ALICE);
    const size = 3 * 1024 * 1024 + 12_345;
    const progress: DownloadProgress[] = [];

    const result = await client.download(`${origin.url}/bytes/${size}`, { mode, onProgress: (p) => progress.push(p) });

    expect(result.bytes).toBe(size);
    expect(result.sha256).toBe(pseudoRandomSha256(size));
    // Forwarding meters the body; a tunnel also carries the request and response heads.
    if (mode === 'forward') expect(result.meteredBytes).toBe(size);
    else expect(result.meteredBytes).toBeGreaterThan(size);
    expect(result.unitsPaid).toBe(Math.floor(result.meteredBytes / UNIT) + 1);
    expect(result.unitsPaid).toBeLessThanOrEqual(Math.ceil(result.meteredBytes / UNIT) + 1);
    for (const p of progress) {
      const ahead = p.unitsPaid * UNIT - p.meteredBytes;
      expect(ahead).toBeGreaterThan(0);
      expect(ahead).toBeLessThanOrEqual(UNIT);
    }
    expect(progress.at(-1)?.vouchersPerSec).toBeGreaterThan(0);
    // Both sides agree on the bytes; the hotspot ends up credited with every voucher.
    await eventually(() => {
      expect(statsOf(ALICE)).toMatchObject({ bytesServed: result.meteredBytes, unitsPaid: result.unitsPaid, connections: 0, cutOffs: 0 });
    });
    // Each request answered one challenge; the proxy remembers only those.
    expect(proxy.stats().usedNonces).toBeGreaterThan(0);
  });

  it('pauses while vouchers are late and resumes when they arrive', async () => {
    const { origin, clientFor } = await setup({ delayMs: 5 });
    const { client } = clientFor(ALICE);
    const size = 1024 * 1024;
    const result = await client.download(`${origin.url}/bytes/${size}`, { mode });
    expect(result.sha256).toBe(pseudoRandomSha256(size));
    expect(result.unitsPaid).toBe(Math.floor(result.meteredBytes / UNIT) + 1);
  });

  it('cuts off a client that stops paying, after at most the one unit it paid ahead', async () => {
    const { origin, clientFor, statsOf, payments } = await setup({ idleCutoffMs: 200 });
    const { client, payer } = clientFor(ALICE);
    const download = client.download(`${origin.url}/bytes/${4 * 1024 * 1024}`, {
      mode,
      onProgress: (p) => {
        if (p.unitsPaid >= 10) payer.stop();
      },
    });

    await expect(download).rejects.toBeInstanceOf(DownloadInterruptedError);
    const stats = statsOf(ALICE);
    // The 10th voucher may or may not have left before stop(), depending on when it was sent.
    const creditedUnits = Number(payments.credited(ALICE.address, MEMORY_CHANNEL) / PRICE);
    expect(creditedUnits).toBeGreaterThanOrEqual(9);
    expect(creditedUnits).toBeLessThanOrEqual(10);
    expect(stats).toMatchObject({ unitsPaid: creditedUnits, cutOffs: 1, allowance: 0 });
    // Served exactly what was paid for: the paid-ahead unit, not a byte more.
    expect(stats?.bytesServed).toBe(creditedUnits * UNIT);
    expect(client.meteredBytes).toBeLessThanOrEqual(creditedUnits * UNIT);
    await eventually(() => expect(statsOf(ALICE)?.connections).toBe(0));
  });

  it('shares one allowance across a client’s concurrent downloads and keeps clients apart', async () => {
    const { origin, clientFor, statsOf } = await setup();
    const alice = clientFor(ALICE).client;
    const bob = clientFor(BOB).client;
    const sizes = [700_000, 900_000, 300_000];
    const results = await Promise.all([
      alice.download(`${origin.url}/bytes/${sizes[0]}`, { mode }),
      alice.download(`${origin.url}/bytes/${sizes[1]}`, { mode }),
      bob.download(`${origin.url}/bytes/${sizes[2]}`, { mode }),
    ]);
    results.forEach((r, i) => expect(r.sha256).toBe(pseudoRandomSha256(sizes[i] ?? 0)));
    for (const [signer, client] of [[ALICE, alice], [BOB, bob]] as const) {
      expect(client.unitsPaid).toBe(Math.floor(client.meteredBytes / UNIT) + 1);
      await eventually(() => expect(statsOf(signer)).toMatchObject({ bytesServed: client.meteredBytes, unitsPaid: client.unitsPaid }));
    }
  });
  it('stops reading from the origin while the client has not paid', async () => {
    // An origin that counts what it manages to send of a 256 MB body.
    let sent = 0;
    const body = 256 * 1024 * 1024;
    const origin = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': body });
      const chunks = (function* () {
        for (; sent < body; sent += 64 * 1024) yield Buffer.alloc(64 * 1024);
      })();
      Readable.from(chunks).pipe(res);
    });
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    cleanups.push(async () => {
      origin.closeAllConnections();
      origin.close();
    });
    const { clientFor, statsOf } = await setup({ allow: [`127.0.0.1:${(origin.address() as AddressInfo).port}`] });
    const { client, payer } = clientFor(ALICE);
    let stopped = false;
    const download = client.download(`http://127.0.0.1:${(origin.address() as AddressInfo).port}/`, {
      mode,
      onProgress: (p) => {
        if (p.unitsPaid < 3) return;
        payer.stop();
        stopped = true;
      },
    });
    download.catch(() => {}); // cut short by the cleanup

    await eventually(() => {
      expect(stopped).toBe(true);
      expect(statsOf(ALICE)?.allowance).toBe(0);
    });
    // Give the origin every chance to push more: only socket buffers (a few MB) may fill.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stats = statsOf(ALICE);
    expect(stats?.allowance).toBe(0);
    expect(stats?.bytesServed).toBe((stats?.unitsPaid ?? 0) * UNIT);
    expect(sent).toBeLessThan((stats?.bytesServed ?? 0) + 32 * 1024 * 1024);
  });
});

describe.each(['forward', 'connect'] as const)('paying client, %s mode', (mode) => {
  it('fails the download with the payment layer’s error', async () => {
    const { origin, proxy } = await setup();
    const broken = new Error('channel closed');
    const client = createPayingClient({ proxyUrl: proxy.url, clientAddress: ALICE.address, channel: MEMORY_CHANNEL, price: PRICE, payments: { payUpTo: () => Promise.reject(broken) }, sign: (d) => ALICE.sign(d) });
    await expect(client.download(`${origin.url}/bytes/${UNIT}`, { mode })).rejects.toBe(broken);
  });
});

describe('metered proxy refusals', () => {
  it('answers 407 without a Picopay Proxy-Authorization', async () => {
    const { proxy, origin } = await setup();
    const authority = origin.url.slice('http://'.length);
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`)).toBe(407);
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, { 'proxy-authorization': 'Basic YTpi' })).toBe(407);
    expect(await statusOf(proxy.url, 'CONNECT', authority)).toBe(407);
    expect(await statusOf(proxy.url, 'CONNECT', authority, { 'proxy-authorization': 'Picopay 0x1234' })).toBe(407);
    // The old format: naming an address proves nothing.
    expect(await statusOf(proxy.url, 'CONNECT', authority, { 'proxy-authorization': `Picopay ${ALICE.address}` })).toBe(407);
  });

  it('refuses upstream hosts outside the allow-list (403) before connecting anywhere', async () => {
    const { proxy, clientFor } = await setup();
    // .invalid never resolves (RFC 6761): even a broken check could not reach the internet.
    expect(await statusOf(proxy.url, 'GET', 'http://example.invalid/', await signedHeaders(proxy.url, ALICE))).toBe(403);
    expect(await statusOf(proxy.url, 'CONNECT', 'example.invalid:80', await signedHeaders(proxy.url, ALICE))).toBe(403);
    expect(await statusOf(proxy.url, 'CONNECT', '10.255.255.1:443', await signedHeaders(proxy.url, ALICE))).toBe(403);
    const { client } = clientFor(ALICE);
    await expect(client.download('http://example.invalid/bytes/1', { mode: 'connect' })).rejects.toMatchObject({ status: 403 });
  });

  it('answers 402 to a client that never pays, once the cut-off delay has passed, and forgets it', async () => {
    const { proxy, origin, clientFor } = await setup({ idleCutoffMs: 100 });
    const { client, payer } = clientFor(ALICE);
    payer.stop();
    for (const mode of ['forward', 'connect'] as const) {
      await expect(client.download(`${origin.url}/bytes/10`, { mode })).rejects.toEqual(new HttpStatusError(402, `${origin.url}/bytes/10`));
    }
    expect(proxy.stats().clients).toEqual([]);
  });
});

describe('proxy authentication', () => {
  /** A proxy where ALICE has paid ahead, so a request that passes as hers is served at once. */
  async function withAlicePaidUp(options: SetupOptions = {}) {
    const env = await setup(options);
    await env.payments.payer(ALICE.address).payUpTo(10n * PRICE);
    await eventually(() => expect(env.payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(10n * PRICE));
    return { ...env, authority: env.origin.url.slice('http://'.length) };
  }

  it.each(['forward', 'connect'] as const)('refuses a client that names another’s address without her key (%s)', async (mode) => {
    const { origin, clientFor, statsOf } = await withAlicePaidUp();
    await clientFor(ALICE).client.download(`${origin.url}/bytes/1000`, { mode });
    const served = statsOf(ALICE)?.bytesServed;

    const impostor = clientFor(MALLORY, ALICE.address).client;
    await expect(impostor.download(`${origin.url}/bytes/1000`, { mode })).rejects.toMatchObject({ status: 407 });
    expect(impostor.meteredBytes).toBe(0);
    expect(statsOf(ALICE)?.bytesServed).toBe(served);
  });

  it('answers a forged signature with 407, no bytes and a fresh challenge, and leaves the nonce to its owner', async () => {
    const { proxy, origin, authority } = await withAlicePaidUp();
    const { nonce } = await ask(proxy.url, 'CONNECT', authority);
    if (nonce === undefined) throw new Error('no challenge');

    const forged = await ask(proxy.url, 'CONNECT', authority, signedFor(proxy.url, MALLORY, nonce, ALICE.address));
    expect(forged).toMatchObject({ status: 407, bytes: 0 });
    expect(forged.nonce).not.toBe(nonce);
    expect((await ask(proxy.url, 'GET', `${origin.url}/bytes/10`, signedFor(proxy.url, MALLORY, nonce, ALICE.address))).bytes).toBe(0);
    // The forgeries did not use the nonce up: its owner still can.
    expect(await statusOf(proxy.url, 'CONNECT', authority, signedFor(proxy.url, ALICE, nonce))).toBe(200);
  });

  it('refuses a replayed Proxy-Authorization, in either mode', async () => {
    const { proxy, origin, authority } = await withAlicePaidUp();
    const forwarded = await signedHeaders(proxy.url, ALICE);
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, forwarded)).toBe(200);
    expect(await ask(proxy.url, 'GET', `${origin.url}/bytes/10`, forwarded)).toMatchObject({ status: 407, bytes: 0 });
    expect(await statusOf(proxy.url, 'CONNECT', authority, forwarded)).toBe(407);

    const tunnelled = await signedHeaders(proxy.url, ALICE);
    expect(await statusOf(proxy.url, 'CONNECT', authority, tunnelled)).toBe(200);
    expect(await ask(proxy.url, 'CONNECT', authority, tunnelled)).toMatchObject({ status: 407, bytes: 0 });
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, tunnelled)).toBe(407);
  });

  it('refuses a nonce it never issued, and one signed for another proxy', async () => {
    const { proxy, authority } = await withAlicePaidUp();
    expect(await statusOf(proxy.url, 'CONNECT', authority, signedFor(proxy.url, ALICE, 'ab'.repeat(32)))).toBe(407);

    const { nonce } = await ask(proxy.url, 'CONNECT', authority);
    if (nonce === undefined) throw new Error('no challenge');
    const relayed = signedFor('http://elsewhere.example:8080', ALICE, nonce);
    expect(await statusOf(proxy.url, 'CONNECT', authority, relayed)).toBe(407);
  });

  it('refuses expired nonces: with a zero TTL nothing gets through', async () => {
    const { proxy, origin, authority, clientFor } = await withAlicePaidUp({ nonceTtlMs: 0 });
    expect(await statusOf(proxy.url, 'CONNECT', authority, await signedHeaders(proxy.url, ALICE))).toBe(407);
    for (const mode of ['forward', 'connect'] as const) {
      await expect(clientFor(ALICE).client.download(`${origin.url}/bytes/10`, { mode })).rejects.toMatchObject({ status: 407 });
    }
  });

  it('an outsider flooding it with 10,000 unauthenticated requests cannot push out a waiting client\'s challenge', async () => {
    const { proxy, origin, payments } = await setup({ maxNonces: 5 });
    await payments.payer(ALICE.address).payUpTo(10n * PRICE);
    await eventually(() => expect(payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(10n * PRICE));
    const waiting = await signedHeaders(proxy.url, ALICE);
    for (let i = 0; i < 100; i++) await Promise.all(Array.from({ length: 100 }, () => ask(proxy.url, 'GET', 'http://127.0.0.1/')));
    expect(proxy.stats().usedNonces).toBe(0);
    // The waiting answer passes, once: served, its nonce is spent.
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, waiting)).toBe(200);
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, waiting)).toBe(407);
    expect(proxy.stats().usedNonces).toBe(1);
  });

  it('one answer waiting in several requests at once is served once', async () => {
    const { proxy, origin, payments } = await setup({ idleCutoffMs: 2000 });
    const header = await signedHeaders(proxy.url, ALICE);
    const requests = Array.from({ length: 4 }, () => statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, header));
    // They all wait for a payment (the account exists once the first has come); it comes.
    await eventually(() => expect(proxy.stats().clients).toHaveLength(1));
    await payments.payer(ALICE.address).payUpTo(10n * PRICE);
    expect((await Promise.all(requests)).sort()).toEqual([200, 407, 407, 407]);
  });

  it('answers signed by keys that never paid spend no nonce: they cannot fill its memory against paying clients', async () => {
    const { proxy, origin, payments } = await setup({ maxNonces: 5, idleCutoffMs: 50 });
    for (let i = 0; i < 20; i++) expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, await signedHeaders(proxy.url, Signer.random()))).toBe(402);
    expect(proxy.stats().usedNonces).toBe(0);
    await payments.payer(ALICE.address).payUpTo(10n * PRICE);
    await eventually(() => expect(payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(10n * PRICE));
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, await signedHeaders(proxy.url, ALICE))).toBe(200);
  });
});

describe('where a paying client may go', () => {
  it("refuses every way of naming this machine, its LAN or a metadata service, in either mode, and the service behind never sees a connection", async () => {
    // A local service a client must not reach: it stands for the gateway's API, the broker, anvil's JSON-RPC.
    let reached = 0;
    const service = http.createServer((_req, res) => (reached++, res.end('{"result":["0x…unlocked"]}')));
    service.on('connection', () => reached++);
    service.listen(0, '127.0.0.1');
    await once(service, 'listening');
    cleanups.push(async () => void service.close());
    const port = (service.address() as AddressInfo).port;
    const env = await setup();
    await env.payments.payer(ALICE.address).payUpTo(10n * PRICE);
    await eventually(() => expect(env.payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(10n * PRICE));
    const targets = [
      `127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `0.0.0.0:${port}`, `127.1.2.3:${port}`,
      `2130706433:${port}`, `0x7f000001:${port}`, `[::ffff:127.0.0.1]:${port}`,
      '10.0.0.1:80', '172.16.0.1:80', '192.168.1.1:80', '169.254.169.254:80', '100.64.0.1:80', '[fe80::1]:80', '[fc00::1]:80',
    ];
    for (const target of targets) {
      expect(await statusOf(env.proxy.url, 'CONNECT', target, await signedHeaders(env.proxy.url, ALICE)), `CONNECT ${target}`).toBe(403);
      expect(await statusOf(env.proxy.url, 'GET', `http://${target}/`, await signedHeaders(env.proxy.url, ALICE)), `GET ${target}`).toBe(403);
    }
    expect(reached).toBe(0);
    // What the operator allowed (the test origin) is still served.
    expect(await statusOf(env.proxy.url, 'GET', `${env.origin.url}/bytes/10`, await signedHeaders(env.proxy.url, ALICE))).toBe(200);
  });
});

describe('metering per virtual channel', () => {
  const CHANNEL_B = `0x${'b2'.repeat(32)}`;

  it('a payer that settles and comes back with another channel is served from zero, as often as it likes', async () => {
    const { origin, payments, proxy, statsOf } = await setup();
    for (const channel of [MEMORY_CHANNEL, CHANNEL_B]) {
      const payer = payments.payer(ALICE.address, channel);
      const client = createPayingClient({ proxyUrl: proxy.url, clientAddress: ALICE.address, channel, price: PRICE, payments: payer, sign: (d) => ALICE.sign(d) });
      const result = await client.download(`${origin.url}/bytes/${3 * UNIT}`);
      expect(result.bytes).toBe(3 * UNIT);
      proxy.closeChannel(channel); // settled
    }
    expect(statsOf(ALICE)).toBeUndefined();
  });

  it("a client naming another's channel gets nothing of it", async () => {
    const { origin, payments, proxy } = await setup({ idleCutoffMs: 200 });
    await payments.payer(ALICE.address).payUpTo(10n * PRICE);
    await eventually(() => expect(payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(10n * PRICE));
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, await signedHeaders(proxy.url, MALLORY))).toBe(402);
    expect(await statusOf(proxy.url, 'GET', `${origin.url}/bytes/10`, await signedHeaders(proxy.url, ALICE))).toBe(200);
  });

  it('a restarted hotspot serves nothing twice: what each channel was served is kept, rounded up to its unit', async () => {
    const origin = await startOrigin();
    cleanups.push(origin.close);
    const payments = new MemoryPayments();
    const servedLog = new MemoryServedLog();
    const start = () => startMeteredProxy({ price: PRICE, payments, idleCutoffMs: 10_000, servedLog, upstream: { allowed: [new URL(origin.url).host] }, logger: silentLogger });
    const first = await start();
    const payer = payments.payer(ALICE.address);
    const client = createPayingClient({ proxyUrl: first.url, clientAddress: ALICE.address, channel: MEMORY_CHANNEL, price: PRICE, payments: payer, sign: (d) => ALICE.sign(d) });
    await client.download(`${origin.url}/bytes/${Math.floor(2.5 * UNIT)}`);
    const paidUnits = Number(payments.credited(ALICE.address, MEMORY_CHANNEL) / PRICE);
    await first.close();
    const second = await start();
    cleanups.push(second.close);
    // The same channel at the restarted proxy: what was paid for was served (the unit it had
    // started counts as served), so only a further payment buys more.
    await payer.payUpTo(BigInt(paidUnits + 1) * PRICE);
    await eventually(() => expect(payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(BigInt(paidUnits + 1) * PRICE));
    expect(await statusOf(second.url, 'GET', `${origin.url}/bytes/10`, await signedHeaders(second.url, ALICE))).toBe(200);
    const stats = second.stats().clients.find((c) => c.channel === MEMORY_CHANNEL)!;
    expect(stats.bytesServed).toBe(paidUnits * UNIT + 10);
    expect(stats.allowance).toBe(UNIT - 10);
  });
});

describe.each(['forward', 'connect'] as const)('resuming, %s mode', (mode) => {
  it('a download cut by a hotspot restart goes on from the byte it reached, on the same channel: the hotspot says what it served, the client pays on', async () => {
    const origin = await startOrigin();
    cleanups.push(origin.close);
    const payments = new MemoryPayments();
    const servedLog = new MemoryServedLog();
    const start = (port?: number) => startMeteredProxy({ port, price: PRICE, payments, idleCutoffMs: 200, servedLog, upstream: { allowed: [new URL(origin.url).host] }, logger: silentLogger });
    const first = await start();
    const client = createPayingClient({ proxyUrl: first.url, clientAddress: ALICE.address, channel: MEMORY_CHANNEL, price: PRICE, payments: payments.payer(ALICE.address), sign: (d) => ALICE.sign(d) });
    const size = 6 * UNIT + 777;
    const url = `${origin.url}/bytes/${size}`;
    const received = nothingReceived();
    const offset = Math.floor(2.5 * UNIT);
    const hold = origin.hold(offset);
    let reached!: () => void;
    const arrived = new Promise<void>((resolve) => (reached = resolve));
    const cut = client.download(url, { mode, received, onProgress: (p) => p.bytes >= offset && reached() });
    await arrived;
    await first.close();
    await expect(cut).rejects.toBeInstanceOf(DownloadInterruptedError);
    hold.release();
    expect(received.bytes).toBe(offset);
    const second = await start(first.port);
    cleanups.push(second.close);
    // Its count was rounded up to the unit's end at the restart: it waits for a payment, then
    // refuses with 402 and what it served; the client believes it and pays, and goes on.
    const result = await downloadRetrying(client, url, { mode, received });
    expect(result.bytes).toBe(size);
    expect(result.sha256).toBe(pseudoRandomSha256(size));
    const credited = payments.credited(ALICE.address, MEMORY_CHANNEL);
    // Every started unit plus one ahead, and at most the unit the restart's rounding took.
    expect(credited).toBeGreaterThanOrEqual(BigInt(Math.floor(size / UNIT)) * PRICE);
    expect(credited).toBeLessThanOrEqual(BigInt(Math.ceil(size / UNIT) + 2) * PRICE);
    // The hotspot never served what it was not paid for.
    const stats = second.stats().clients.find((c) => c.channel === MEMORY_CHANNEL)!;
    expect(BigInt(stats.bytesServed)).toBeLessThanOrEqual((credited / PRICE) * BigInt(UNIT));
  });

  it('a payer restarted after the hotspot served all it had paid for goes on in the same channel from what it paid', async () => {
    const { origin, payments, proxy, statsOf } = await setup({ idleCutoffMs: 200 });
    const stopping = payments.payer(ALICE.address);
    const before = createPayingClient({ proxyUrl: proxy.url, clientAddress: ALICE.address, channel: MEMORY_CHANNEL, price: PRICE, payments: stopping, sign: (d) => ALICE.sign(d) });
    const cut = before.download(`${origin.url}/bytes/${4 * 1024 * 1024}`, { mode, onProgress: (p) => p.unitsPaid >= 4 && stopping.stop() });
    await expect(cut).rejects.toBeInstanceOf(DownloadInterruptedError);
    const paid = payments.credited(ALICE.address, MEMORY_CHANNEL);
    expect(statsOf(ALICE)?.allowance).toBe(0);
    // The restarted payer knows only what its channel paid: it counts it all as served, pays its unit ahead again and is served.
    const after = createPayingClient({ proxyUrl: proxy.url, clientAddress: ALICE.address, channel: MEMORY_CHANNEL, price: PRICE, paid, payments: payments.payer(ALICE.address), sign: (d) => ALICE.sign(d) });
    const size = 2 * UNIT + 5;
    const result = await after.download(`${origin.url}/bytes/${size}`, { mode });
    expect(result.sha256).toBe(pseudoRandomSha256(size));
    const credited = payments.credited(ALICE.address, MEMORY_CHANNEL);
    expect(credited).toBeGreaterThan(paid);
    expect(credited - paid).toBeLessThanOrEqual(BigInt(Math.floor((after.meteredBytes - Number(paid / PRICE) * UNIT) / UNIT) + 1) * PRICE);
    await eventually(() => expect(statsOf(ALICE)?.connections).toBe(0));
  });
});

describe('a paused hotspot', () => {
  it('answering 503 however often gets the one unit paid ahead, nothing more', async () => {
    const { origin, proxy, clientFor, payments } = await setup();
    const { client } = clientFor(ALICE);
    proxy.pause();
    const received = nothingReceived();
    for (let attempt = 0; attempt < 6; attempt++) await expect(client.download(`${origin.url}/bytes/${3 * UNIT}`, { received })).rejects.toMatchObject({ status: 503 });
    await eventually(() => expect(payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(PRICE));
    expect(client.unitsPaid).toBe(1);
  });

  it("a hotspot that claims at every 402 it served all that was paid gets at most the client's budget (3 units) beyond its bytes", async () => {
    // A hostile proxy: every request is refused with 402 and a claim of everything paid.
    const payments = new MemoryPayments();
    const payer = payments.payer(ALICE.address);
    const nonces = new NonceBook();
    const liar = http.createServer((req, res) => {
      if (!req.headers['proxy-authorization']) return void res.writeHead(407, { 'proxy-authenticate': formatChallenge(nonces.issue()) }).end();
      res.writeHead(402, { 'picopay-served': String(Number(payments.credited(ALICE.address, MEMORY_CHANNEL) / PRICE) * UNIT) }).end();
    });
    liar.listen(0, '127.0.0.1');
    await once(liar, 'listening');
    cleanups.push(async () => void liar.close());
    const client = createPayingClient({ proxyUrl: `http://127.0.0.1:${(liar.address() as AddressInfo).port}`, clientAddress: ALICE.address, channel: MEMORY_CHANNEL, price: PRICE, payments: payer, sign: (d) => ALICE.sign(d) });
    let refused: unknown;
    for (let attempt = 0; attempt < 12 && !refused; attempt++) {
      const error = await client.download('http://example.com/file').catch((e: unknown) => e);
      if (error instanceof ServedClaimRefusedError) refused = error;
      else expect(error).toMatchObject({ status: 402 });
      // The payment it made lands before the next claim.
      await eventually(() => expect(payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(BigInt(client.unitsPaid) * PRICE));
    }
    // The claim past the budget ends the download: the payer gives up at once, it does not retry.
    expect(refused).toBeInstanceOf(ServedClaimRefusedError);
    expect(payments.credited(ALICE.address, MEMORY_CHANNEL)).toBe(4n * PRICE);
    expect(client.unitsPaid).toBe(4);
  });


  it('cuts every client and answers 503 until resumed; the client goes on from the byte it reached', async () => {
    const { origin, proxy, clientFor, statsOf } = await setup();
    const { client } = clientFor(ALICE);
    const size = 5 * UNIT;
    const url = `${origin.url}/bytes/${size}`;
    const received = nothingReceived();
    const hold = origin.hold(2 * UNIT);
    let reached!: () => void;
    const arrived = new Promise<void>((resolve) => (reached = resolve));
    const cut = client.download(url, { received, onProgress: (p) => p.bytes >= 2 * UNIT && reached() });
    await arrived;
    proxy.pause();
    await expect(cut).rejects.toBeInstanceOf(DownloadInterruptedError);
    hold.release();
    await expect(client.download(url, { received })).rejects.toMatchObject({ status: 503 });
    const paidWhilePaused = statsOf(ALICE)!.paid;
    proxy.resume();
    const result = await downloadRetrying(client, url, { received });
    expect(result.sha256).toBe(pseudoRandomSha256(size));
    expect(statsOf(ALICE)!.paid).toBeGreaterThanOrEqual(paidWhilePaused);
  });
});

describe('the tariff', () => {
  it("is served to anyone, signed by the hotspot's key, and is what the proxy meters by", async () => {
    const origin = await startOrigin();
    cleanups.push(origin.close);
    const proxy = await startMeteredProxy({ unitBytes: 50_000, price: 3n, payments: new MemoryPayments(), idleCutoffMs: 1000, hotspot: { address: ALICE.address, sign: (d) => ALICE.sign(d) }, logger: silentLogger });
    cleanups.push(proxy.close);
    const tariff = await fetchTariff(proxy.url, ALICE.address, { maxPrice: 3n, unitBytes: 50_000 });
    expect(tariff).toEqual({ unitBytes: 50_000, pricePerUnit: 3n, prepaidUnits: 1 });
    await expect(fetchTariff(proxy.url, MALLORY.address, { maxPrice: 3n, unitBytes: 50_000 })).rejects.toBeInstanceOf(TariffRefusedError);
  });
});
