import { encodeFunctionData } from 'viem';
import { describe, expect, it } from 'vitest';
import { adjudicatorAbi } from '../../src/chain/abi.generated.ts';
import { deposit } from '../../src/chain/deposit.ts';
import { watchAdjudicator, type AdjudicatorEvent } from '../../src/chain/watcher.ts';
import { NATIVE_ASSET } from '../../src/model/types.ts';
import { idOf, makeParams, party, useDevnet } from '../../src/testing/chain.ts';

const devnet = useDevnet();

describe('event watcher', () => {
  it('delivers events only after the configured confirmations, in order, once', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const seen: AdjudicatorEvent[] = [];
    const watcher = await watchAdjudicator(a.client, { confirmations: 3, pollIntervalMs: 60_000, onEvent: (e) => void seen.push(e) });
    const ids = [idOf(makeParams(d, a, b)), idOf(makeParams(d, a, b))];
    await deposit(a.client, { channelId: ids[0]!, asset: NATIVE_ASSET, amount: 1n });
    await deposit(a.client, { channelId: ids[1]!, asset: NATIVE_ASSET, amount: 2n });
    await watcher.poll();
    expect(seen).toHaveLength(0);
    await d.mine(1);
    await watcher.poll();
    expect(seen.map((e) => e.eventName === 'Deposited' && e.args.channelId)).toEqual([ids[0]]);
    await d.mine(1);
    await watcher.poll();
    await watcher.poll();
    expect(seen.map((e) => e.eventName === 'Deposited' && e.args.holdings)).toEqual([1n, 2n]);
    await watcher.stop();

    // Resuming from the saved cursor delivers nothing twice.
    const resumed: AdjudicatorEvent[] = [];
    const again = await watchAdjudicator(a.client, { confirmations: 1, fromBlock: watcher.cursor, pollIntervalMs: 60_000, onEvent: (e) => void resumed.push(e) });
    await again.poll();
    expect(resumed).toHaveLength(0);
    await deposit(a.client, { channelId: ids[0]!, asset: NATIVE_ASSET, amount: 5n });
    await again.poll();
    expect(resumed.map((e) => e.eventName)).toEqual(['Deposited']);
    await again.stop();
  });

  it('polls on its own and reports handler errors without stopping', async () => {
    const d = devnet();
    const a = party(d, 3);
    const errors: Error[] = [];
    let calls = 0;
    const watcher = await watchAdjudicator(a.client, {
      confirmations: 1,
      pollIntervalMs: 20,
      onEvent: () => {
        calls++;
        if (calls === 1) throw new Error('handler failed');
      },
      onError: (e) => errors.push(e),
    });
    await deposit(a.client, { channelId: idOf(makeParams(d, a, party(d, 4))), asset: NATIVE_ASSET, amount: 1n });
    await expect.poll(() => calls, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
    expect(errors.map((e) => e.message)).toEqual(['handler failed']);
    await watcher.stop();
  });
});

describe('event watcher across a re-org', () => {
  it('rewinds to the fork point by block hash and delivers what the new blocks hold', async () => {
    const d = devnet();
    const [a, b] = [party(d, 5), party(d, 6)];
    const id = idOf(makeParams(d, a, b));
    const seen: bigint[] = [];
    const reorgs: bigint[] = [];
    const watcher = await watchAdjudicator(a.client, {
      confirmations: 1,
      pollIntervalMs: 60_000,
      onEvent: (e) => void (e.eventName === 'Deposited' && e.args.channelId === id && seen.push(e.args.holdings)),
      onReorg: (from) => void reorgs.push(from),
    });
    await deposit(a.client, { channelId: id, asset: NATIVE_ASSET, amount: 1n });
    await d.mine(2);
    await watcher.poll();
    expect(seen).toEqual([1n]);
    const head = await d.deployer.publicClient.getBlockNumber({ cacheTime: 0 });
    // The last three blocks are replaced, at the same heights: the deposit is gone, another one is in the first new block.
    const other = await a.client.walletClient.prepareTransactionRequest({
      account: a.client.walletClient.account!,
      to: a.client.adjudicator,
      value: 7n,
      data: encodeFunctionData({ abi: adjudicatorAbi, functionName: 'deposit', args: [id, NATIVE_ASSET, 7n] }),
      chain: a.client.walletClient.chain,
      // Estimated on the old chain, where the holdings slot is already set: too little for the new one.
      gas: 200_000n,
      nonce: await d.deployer.publicClient.getTransactionCount({ address: a.client.account, blockNumber: head - 3n }),
    });
    const raw = await a.client.walletClient.signTransaction(other as never);
    await d.deployer.publicClient.request({ method: 'anvil_reorg' as never, params: [3, [[raw, 0]]] as never });
    expect(await d.deployer.publicClient.getBlockNumber({ cacheTime: 0 })).toBe(head);
    await watcher.poll();
    expect(reorgs).toEqual([head - 2n]);
    expect(seen).toEqual([1n, 7n]);
    // Nothing changed since: nothing is delivered again.
    await watcher.poll();
    expect(seen).toEqual([1n, 7n]);
    await watcher.stop();
  });
});

describe('event watcher on a flaky RPC', () => {
  it('takes a failing block read for an error, never for a re-org: nothing is rewound or delivered twice', async () => {
    const d = devnet();
    const [a, b] = [party(d, 7), party(d, 8)];
    let failing = false;
    const publicClient = new Proxy(a.client.publicClient, {
      get: (target, key) => (key === 'getBlock' && failing ? () => Promise.reject(new Error('429 too many requests')) : Reflect.get(target, key)),
    });
    const id = idOf(makeParams(d, a, b));
    const seen: bigint[] = [];
    const reorgs: bigint[] = [];
    const errors: Error[] = [];
    const watcher = await watchAdjudicator({ ...a.client, publicClient }, {
      confirmations: 1,
      pollIntervalMs: 60_000,
      onEvent: (e) => void (e.eventName === 'Deposited' && e.args.channelId === id && seen.push(e.args.holdings)),
      onReorg: (from) => void reorgs.push(from),
      onError: (e) => errors.push(e),
    });
    await deposit(a.client, { channelId: id, asset: NATIVE_ASSET, amount: 1n });
    await watcher.poll();
    const cursor = watcher.cursor;
    failing = true;
    await d.mine(1);
    await watcher.poll();
    await watcher.poll();
    expect(errors.length).toBeGreaterThan(0);
    expect(watcher.cursor).toBe(cursor);
    failing = false;
    await watcher.poll();
    expect(reorgs).toEqual([]);
    expect(seen).toEqual([1n]);
    await watcher.stop();
  });
});
