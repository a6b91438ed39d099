import { createTestClient, http } from 'viem';
import { describe, expect, it } from 'vitest';
import { deposit } from '../../src/chain/deposit.ts';
import { ChainTransactionError } from '../../src/chain/errors.ts';
import { readHoldings } from '../../src/chain/read.ts';
import { resumePending, type PendingTx } from '../../src/chain/sender.ts';
import { NATIVE_ASSET } from '../../src/model/types.ts';
import { idOf, makeParams, party, useDevnet } from '../../src/testing/chain.ts';

const devnet = useDevnet();

function testClient() {
  return createTestClient({ mode: 'anvil', transport: http(devnet().anvil.rpcUrl) });
}

describe('transactions survive a stuck mempool and a restart', () => {
  it('replaces a transaction that is not mined in time, with the same nonce', async () => {
    const d = devnet();
    const test = testClient();
    const [a, b] = [party(d, 5), party(d, 6)];
    const channelId = idOf(makeParams(d, a, b));
    const broadcasts: PendingTx[] = [];
    const finished: number[] = [];
    const client = { ...a.client, send: { stuckAfterMs: 150, onBroadcast: (p: PendingTx) => void broadcasts.push(structuredClone(p)), onFinished: (p: PendingTx) => void finished.push(p.nonce) } };
    await test.setAutomine(false);
    try {
      const sent = deposit(client, { channelId, asset: NATIVE_ASSET, amount: 7n });
      await expect.poll(() => broadcasts.length, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
      await test.mine({ blocks: 1 });
      const result = await sent;
      expect(new Set(broadcasts.map((p) => p.nonce)).size).toBe(1);
      expect(broadcasts[1]!.maxFeePerGas).toBeGreaterThan(broadcasts[0]!.maxFeePerGas);
      expect(broadcasts.at(-1)!.hashes).toContain(result.hash);
      // Mined: the journal may drop it, once.
      expect(finished).toEqual([broadcasts[0]!.nonce]);
    } finally {
      await test.setAutomine(true);
    }
    expect((await readHoldings(a.client, channelId, NATIVE_ASSET)).amount).toBe(7n);
  });

  it('resumes a journalled transaction after a restart, re-broadcasting it if the node lost it', async () => {
    const d = devnet();
    const test = testClient();
    const [a, b] = [party(d, 7), party(d, 8)];
    const channelId = idOf(makeParams(d, a, b));
    let journal: PendingTx | undefined;
    await test.setAutomine(false);
    try {
      // The process "dies" while its transaction waits in the mempool.
      const finished: number[] = [];
      const dying = { ...a.client, send: { stuckAfterMs: 100, maxReplacements: 0, onBroadcast: (p: PendingTx) => void (journal = structuredClone(p)), onFinished: (p: PendingTx) => void finished.push(p.nonce) } };
      await expect(deposit(dying, { channelId, asset: NATIVE_ASSET, amount: 3n })).rejects.toBeInstanceOf(ChainTransactionError);
      // Given up on while unmined: it stays in the journal.
      expect(finished).toEqual([]);
      await test.dropTransaction({ hash: journal!.hashes[0]! });
      const resumed = resumePending({ ...a.client, send: { stuckAfterMs: 5000 } }, journal!, { onFinished: (p) => void finished.push(p.nonce) });
      // Mined in a block of its own; no sleep decides anything here: the resume waits for it.
      await expect.poll(async () => (await test.getTxpoolContent()).pending[a.address.toLowerCase() as `0x${string}`] !== undefined || (await test.getTxpoolContent()).pending[a.address as `0x${string}`] !== undefined, { timeout: 5000 }).toBe(true);
      await test.mine({ blocks: 1 });
      const result = await resumed;
      expect(result.hash).not.toBe(journal!.hashes[0]);
      expect(finished).toEqual([journal!.nonce]);
    } finally {
      await test.setAutomine(true);
    }
    expect((await readHoldings(a.client, channelId, NATIVE_ASSET)).amount).toBe(3n);
  });
});

describe('concurrent sends from one account', () => {
  it('take distinct nonces', async () => {
    const d = devnet();
    const [a, b] = [party(d, 9), party(d, 1)];
    const ids = Array.from({ length: 6 }, () => idOf(makeParams(d, a, b)));
    const results = await Promise.all(ids.map((channelId, i) => deposit(a.client, { channelId, asset: NATIVE_ASSET, amount: BigInt(i + 1) })));
    expect(new Set(results.map((r) => r.hash)).size).toBe(ids.length);
    for (const [i, id] of ids.entries()) expect((await readHoldings(a.client, id, NATIVE_ASSET)).amount).toBe(BigInt(i + 1));
  });

  it('a transaction the node lost (a re-org, a node restart) is sent again as it was, long before it counts as stuck', async () => {
    const d = devnet();
    const test = testClient();
    const [a, b] = [party(d, 2), party(d, 3)];
    const channelId = idOf(makeParams(d, a, b));
    const broadcasts: PendingTx[] = [];
    const client = { ...a.client, send: { stuckAfterMs: 600_000, onBroadcast: (p: PendingTx) => void broadcasts.push(structuredClone(p)) } };
    await test.setAutomine(false);
    try {
      const sent = deposit(client, { channelId, asset: NATIVE_ASSET, amount: 4n });
      await expect.poll(() => broadcasts.length, { timeout: 5000 }).toBe(1);
      await test.dropTransaction({ hash: broadcasts[0]!.hashes[0]! });
      await expect.poll(() => broadcasts.length, { timeout: 40_000, interval: 200 }).toBe(2);
      // The same bytes: same fees, same hash, no replacement.
      expect(broadcasts[1]!.hashes).toEqual(broadcasts[0]!.hashes);
      expect(broadcasts[1]!.maxFeePerGas).toBe(broadcasts[0]!.maxFeePerGas);
      await test.mine({ blocks: 1 });
      expect((await sent).hash).toBe(broadcasts[0]!.hashes[0]);
    } finally {
      await test.setAutomine(true);
    }
    expect((await readHoldings(a.client, channelId, NATIVE_ASSET)).amount).toBe(4n);
  }, 60_000);
});
