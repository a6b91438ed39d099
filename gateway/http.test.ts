import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/log.ts';
import type { Bytes32 } from '../src/model/types.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MemoryNetwork } from '../src/transport/memory.ts';
import { CHAIN, makeParty, stoppedAfterEach, tempDir, until } from '../src/testing/agents.ts';
import { DEFAULT_LIMITS } from './admission.ts';
import { startStatusServer } from './http.ts';
import { Intermediary } from '../src/client/intermediary.ts';

// The operator's HTTP view over a gateway agent with two devices: the dashboard page,
// JSON status, one channel (read from the chain on demand), metrics, and bad requests.

const live = stoppedAfterEach();
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function gatewayWithTwoDevices(funded: { polled: Set<Bytes32>; onDemand: (id: Bytes32) => Promise<boolean> }) {
  const network = new MemoryNetwork();
  const dir = tempDir();
  const store = new ChannelStore(join(dir, 'g.db'), { durability: 'normal' });
  const intermediary = new Intermediary({ records: store.service, chain: CHAIN, holdTimeoutMs: 3000, logger: silentLogger });
  const g = makeParty(network, dir, 'g', { policy: { acceptUpdate: intermediary.decide } }, undefined, store);
  intermediary.attach(g.agent);
  const [a, b] = [makeParty(network, dir, 'a'), makeParty(network, dir, 'b')];
  live.push(a, b, g);
  const la = await a.agent.open(g.signer.address, { balances: [[100n, 100n]] });
  await b.agent.open(g.signer.address, { balances: [[50n, 100n]] });
  await until(() => g.agent.channels().filter((c) => c.phase === 'open').length === 2);
  const http = await startStatusServer({
    address: g.signer.address,
    agent: g.agent,
    intermediary,
    isFunded: (id) => funded.polled.has(id),
    checkFunded: funded.onDemand,
    limits: DEFAULT_LIMITS,
  });
  closers.push(http.close);
  return { url: http.url, la: la.id };
}

/** A raw request, so that methods and paths fetch would refuse still reach the server. */
function raw(url: string, method: string, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('gateway status server', () => {
  it('serves the dashboard, the status, one channel and the metrics', async () => {
    const polled = new Set<Bytes32>();
    const { url, la } = await gatewayWithTwoDevices({ polled, onDemand: async (id) => (polled.add(id), true) });
    const page = await fetch(`${url}/`);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('fetch(\'/status\')');

    const status = (await (await fetch(`${url}/status`)).json()) as { ledgerChannels: { id: string; funded: boolean }[]; virtualChannels: string[] };
    expect(status.ledgerChannels).toHaveLength(2);
    expect(status.ledgerChannels.every((c) => !c.funded)).toBe(true);

    // One channel is read from the chain on demand.
    const one = (await (await fetch(`${url}/channels/${la}`)).json()) as { funded: boolean; balances: string[][] };
    expect(one.funded).toBe(true);
    expect(one.balances).toEqual([['100', '100']]);

    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('picopay_ledger_channels{phase="open"} 2');
    expect(metrics).toContain('picopay_ledger_channels_funded 1');
  });

  it('answers bad requests, and a failing chain read, without falling over', async () => {
    const { url, la } = await gatewayWithTwoDevices({ polled: new Set(), onDemand: () => Promise.reject(new Error('rpc down')) });
    expect((await raw(url, 'POST', '/status')).status).toBe(405);
    expect((await raw(url, 'GET', `/channels/0x${'00'.repeat(32)}`)).status).toBe(404);
    expect((await raw(url, 'GET', '/nowhere')).status).toBe(404);
    expect((await raw(url, 'GET', '//[::1')).status).toBeGreaterThanOrEqual(400);
    // Not seen funded and the chain unreadable: unknown, not "unfunded".
    expect((await raw(url, 'GET', `/channels/${la}`)).status).toBe(503);
    expect((await raw(url, 'GET', '/status')).status).toBe(200);
  });
});
