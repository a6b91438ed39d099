import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { deposit } from '../src/chain/deposit.ts';
import { ChainReadError, ConfigError, ProtocolTimeoutError, TransportError } from '../src/errors.ts';
import { NATIVE_ASSET } from '../src/model/types.ts';
import { ethOutcome, idOf, makeParams, party, useDevnet } from '../src/testing/chain.ts';
import { chainFunding, gatewayFunding, type LedgerView, waitFunded, watchFunding } from './funding.ts';

// The device's own look at the chain: both deposits of its ledger channel, read over
// plain JSON-RPC from a real anvil with the contracts deployed.

const devnet = useDevnet();

function ledgerOf(a: number, b: number): LedgerView {
  const d = devnet();
  const params = makeParams(d, party(d, a), party(d, b));
  const state = { channelId: idOf(params), version: 0n, outcome: ethOutcome(3n, 5n), isFinal: false };
  return { id: state.channelId, current: { state, sigs: [null, null] } };
}

let junk: Server | undefined;
let silent: Server | undefined;
afterAll(() => {
  junk?.close();
  silent?.closeAllConnections();
  silent?.close();
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('chainFunding', () => {
  it('says funded once both deposits are in, and only as deep as asked', async () => {
    const d = devnet();
    const ledger = ledgerOf(1, 2);
    const chain = { rpcUrl: d.anvil.rpcUrl, chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator };
    const now = chainFunding({ ...chain, confirmations: 1 });
    const deep = chainFunding({ ...chain, confirmations: 3 });
    expect(await now.isFunded(ledger)).toBe(false);
    await deposit(d.clients[1]!, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 3n });
    expect(await now.isFunded(ledger)).toBe(false);
    await deposit(d.clients[2]!, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 5n });
    expect(await now.isFunded(ledger)).toBe(true);
    expect(await deep.isFunded(ledger)).toBe(false);
    await d.mine(2);
    expect(await deep.isFunded(ledger)).toBe(true);
  });

  it('a wrong contract address is a typed error, never "funded"', async () => {
    const d = devnet();
    const ledger = ledgerOf(3, 4);
    await deposit(d.clients[3]!, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 8n });
    const elsewhere = chainFunding({ rpcUrl: d.anvil.rpcUrl, chainId: d.deployer.chainId, adjudicator: d.token, confirmations: 1 });
    await expect(elsewhere.isFunded(ledger)).rejects.toBeInstanceOf(ChainReadError);
  });

  it('a node on another chain is a typed error, never "funded"', async () => {
    const d = devnet();
    const ledger = ledgerOf(7, 8);
    await deposit(d.clients[7]!, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 3n });
    await deposit(d.clients[8]!, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 5n });
    const node = { rpcUrl: d.anvil.rpcUrl, adjudicator: d.deployer.adjudicator, confirmations: 1 };
    await expect(chainFunding({ ...node, chainId: d.deployer.chainId + 1n }).isFunded(ledger)).rejects.toBeInstanceOf(ChainReadError);
    expect(await chainFunding({ ...node, chainId: d.deployer.chainId }).isFunded(ledger)).toBe(true);
  });

  it('an RPC that answers nonsense, or none at all, is a typed error and waiting times out', async () => {
    junk = createServer((_, res) => res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: 'many' })));
    const url = await listen(junk);
    const d = devnet();
    const ledger = ledgerOf(5, 6);
    const source = chainFunding({ rpcUrl: url, chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator, confirmations: 1 });
    await expect(source.isFunded(ledger)).rejects.toBeInstanceOf(ChainReadError);
    const errors: unknown[] = [];
    await expect(waitFunded(source, ledger, { timeoutMs: 50, pollMs: 10, onError: (e) => errors.push(e) })).rejects.toBeInstanceOf(ProtocolTimeoutError);
    expect(errors[0]).toBeInstanceOf(ChainReadError);
    expect(() => chainFunding({ rpcUrl: url, chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator, confirmations: 0 })).toThrow(ConfigError);
  });
});

describe('a server that accepts and never answers', () => {
  it('fails each call with a typed error, and waiting still ends at its timeout', async () => {
    silent = createServer(() => {});
    const url = await listen(silent);
    const d = devnet();
    const ledger = ledgerOf(9, 1);
    const chain = chainFunding({ rpcUrl: url, chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator, confirmations: 1 });
    const gateway = gatewayFunding(url);
    await expect(chain.isFunded(ledger, AbortSignal.timeout(20))).rejects.toBeInstanceOf(ChainReadError);
    await expect(gateway.isFunded(ledger, AbortSignal.timeout(20))).rejects.toBeInstanceOf(TransportError);
    for (const source of [chain, gateway]) {
      await expect(waitFunded(source, ledger, { timeoutMs: 100, pollMs: 10 })).rejects.toBeInstanceOf(ProtocolTimeoutError);
    }
  });
});

describe('gatewayFunding', () => {
  it("takes the gateway's word on 200, 404 is not funded, any other status is an error (never \"gone\")", async () => {
    const answers: [number, string][] = [[200, '{"funded":true}'], [200, '{"funded":false}'], [404, '{}'], [503, '{"error":"cannot read the chain now"}'], [502, 'bad gateway']];
    let i = 0;
    const server = createServer((_req, res) => {
      const [status, body] = answers[i++]!;
      res.writeHead(status, { 'content-type': 'application/json' }).end(body);
    });
    const gateway = gatewayFunding(await listen(server));
    const ledger = ledgerOf(9, 2);
    expect(await gateway.isFunded(ledger)).toBe(true);
    expect(await gateway.isFunded(ledger)).toBe(false);
    expect(await gateway.isFunded(ledger)).toBe(false);
    await expect(gateway.isFunded(ledger)).rejects.toBeInstanceOf(TransportError);
    await expect(gateway.isFunded(ledger)).rejects.toBeInstanceOf(TransportError);
    server.closeAllConnections();
    server.close();
  });
});

describe('watchFunding', () => {
  const answers = (...said: boolean[]) => {
    let i = 0;
    return { name: 'scripted', isFunded: async () => said[Math.min(i++, said.length - 1)]! };
  };
  const ledger = { id: `0x${'ab'.repeat(32)}`, current: { state: { channelId: `0x${'ab'.repeat(32)}`, version: 0n, outcome: ethOutcome(1n, 1n), isFinal: false }, sigs: [null, null] } } as LedgerView;

  it('reports deposits that went and came back; past its window it reads nothing', async () => {
    const changes: boolean[] = [];
    const watch = watchFunding(answers(true, false, false, true), ledger, { since: Date.now(), windowMs: 60_000, pollMs: 1, onChange: (f) => changes.push(f) });
    await expect.poll(() => changes, { timeout: 5000 }).toEqual([false, true]);
    expect(watch.funded).toBe(true);
    watch.stop();
    let calls = 0;
    const late = watchFunding({ name: 'counted', isFunded: async () => (calls++, false) }, ledger, { since: Date.now() - 60_000, windowMs: 60_000, pollMs: 1, onChange: (f) => changes.push(f) });
    await new Promise((r) => setImmediate(r));
    expect(calls).toBe(0);
    late.stop();
  });

  it('within its window reads again after each answer; a failing source is asked again', async () => {
    const changes: boolean[] = [];
    const errors: unknown[] = [];
    let calls = 0;
    const source = {
      name: 'flaky',
      isFunded: async () => {
        calls++;
        if (calls === 2) throw new ChainReadError('down');
        return calls < 4;
      },
    };
    const watch = watchFunding(source, ledger, { since: Date.now(), windowMs: 60_000, pollMs: 1, onChange: (f) => changes.push(f), onError: (e) => errors.push(e) });
    await expect.poll(() => changes, { timeout: 5000 }).toEqual([false]);
    expect(errors).toHaveLength(1);
    expect(watch.funded).toBe(false);
    watch.stop();
  });

  it('on a real chain: a deposit a re-org took back makes the channel unfunded until it is deposited again', async () => {
    const d = devnet();
    const ledger = ledgerOf(7, 8);
    const chain = { rpcUrl: d.anvil.rpcUrl, chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator };
    await deposit(party(d, 7).client, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 3n });
    const last = await deposit(party(d, 8).client, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 5n });
    const source = chainFunding({ ...chain, confirmations: 1 });
    expect(await source.isFunded(ledger)).toBe(true);
    const changes: boolean[] = [];
    const watch = watchFunding(source, ledger, { since: Date.now(), windowMs: 60_000, pollMs: 20, onChange: (f) => changes.push(f) });
    try {
      const depth = Number((await d.deployer.publicClient.getBlockNumber({ cacheTime: 0 })) - last.blockNumber + 1n);
      await d.deployer.publicClient.request({ method: 'anvil_reorg' as never, params: [depth, []] as never });
      await expect.poll(() => changes, { timeout: 10_000 }).toEqual([false]);
      await deposit(party(d, 8).client, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 5n });
      await expect.poll(() => changes, { timeout: 10_000 }).toEqual([false, true]);
    } finally {
      watch.stop();
    }
  });
});
