import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { deposit } from '../src/chain/deposit.ts';
import { ChainReadError, ConfigError, ProtocolTimeoutError, TransportError } from '../src/errors.ts';
import { NATIVE_ASSET } from '../src/model/types.ts';
import { ethOutcome, idOf, makeParams, party, useDevnet } from '../src/testing/chain.ts';
import { chainFunding, gatewayFunding, type LedgerView, waitFunded } from './funding.ts';

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
