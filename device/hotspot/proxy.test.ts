import http, { type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { createPayingClient, type DownloadProgress } from './client.ts';
import { DownloadInterruptedError, HttpStatusError } from './errors.ts';
import { MemoryPayments } from './memory-payments.ts';
import { pseudoRandomSha256, startOrigin } from './origin.ts';
import { startMeteredProxy, type ClientStats } from './proxy.ts';

const UNIT = 102_400;
const PRICE = 1_000_000_000n;
const ALICE = '0x00000000000000000000000000000000000a11ce';
const BOB = '0x0000000000000000000000000000000000000b0b';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(options: { delayMs?: number; idleCutoffMs?: number } = {}) {
  const origin = await startOrigin();
  cleanups.push(origin.close);
  const payments = new MemoryPayments({ delayMs: options.delayMs });
  const proxy = await startMeteredProxy({ price: PRICE, payments, idleCutoffMs: options.idleCutoffMs ?? 10_000, logger: silentLogger });
  cleanups.push(proxy.close);
  const clientFor = (address: string) => {
    const payer = payments.payer(address);
    const client = createPayingClient({ proxyUrl: proxy.url, clientAddress: address, price: PRICE, payments: payer });
    return { payer, client };
  };
  const statsOf = (address: string): ClientStats | undefined => proxy.stats().clients.find((c) => c.client === address);
  return { origin, payments, proxy, clientFor, statsOf };
}

/** Polls until `check` passes, for at most 10 s. */
async function eventually(check: () => void): Promise<void> {
  await expect.poll(() => {
    check();
    return true;
  }, { timeout: 10_000, interval: 10 }).toBe(true);
}

/** A raw request to the proxy (what a client that does not play by the rules sends). */
async function ask(proxyUrl: string, method: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  const proxy = new URL(proxyUrl);
  const request = http.request({ host: proxy.hostname, port: proxy.port, method, path, headers, agent: false });
  request.end();
  const [response] = (await once(request, method === 'CONNECT' ? 'connect' : 'response')) as [IncomingMessage];
  response.destroy();
  request.destroy();
  return response.statusCode ?? 0;
}

describe.each(['forward', 'connect'] as const)('metered proxy, %s mode', (mode) => {
  it('delivers a few MB intact, paying every started unit and never more than one unit ahead', async () => {
    const { origin, clientFor, statsOf } = await setup();
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
    const creditedUnits = Number(payments.credited(ALICE) / PRICE);
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
    for (const [address, client] of [[ALICE, alice], [BOB, bob]] as const) {
      expect(client.unitsPaid).toBe(Math.floor(client.meteredBytes / UNIT) + 1);
      await eventually(() => expect(statsOf(address)).toMatchObject({ bytesServed: client.meteredBytes, unitsPaid: client.unitsPaid }));
    }
  });
  it('stops reading from the origin while the client has not paid', async () => {
    const { clientFor, statsOf } = await setup();
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
    const client = createPayingClient({ proxyUrl: proxy.url, clientAddress: ALICE, price: PRICE, payments: { payUpTo: () => Promise.reject(broken) } });
    await expect(client.download(`${origin.url}/bytes/${UNIT}`, { mode })).rejects.toBe(broken);
  });
});

describe('metered proxy refusals', () => {
  it('answers 407 without a Picopay Proxy-Authorization', async () => {
    const { proxy, origin } = await setup();
    const authority = origin.url.slice('http://'.length);
    expect(await ask(proxy.url, 'GET', `${origin.url}/bytes/10`)).toBe(407);
    expect(await ask(proxy.url, 'GET', `${origin.url}/bytes/10`, { 'proxy-authorization': 'Basic YTpi' })).toBe(407);
    expect(await ask(proxy.url, 'CONNECT', authority)).toBe(407);
    expect(await ask(proxy.url, 'CONNECT', authority, { 'proxy-authorization': 'Picopay 0x1234' })).toBe(407);
  });

  it('refuses upstream hosts outside the allow-list (403) before connecting anywhere', async () => {
    const { proxy, clientFor } = await setup();
    const auth = { 'proxy-authorization': `Picopay ${ALICE}` };
    // .invalid never resolves (RFC 6761): even a broken check could not reach the internet.
    expect(await ask(proxy.url, 'GET', 'http://example.invalid/', auth)).toBe(403);
    expect(await ask(proxy.url, 'CONNECT', 'example.invalid:80', auth)).toBe(403);
    expect(await ask(proxy.url, 'CONNECT', '10.255.255.1:443', auth)).toBe(403);
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
