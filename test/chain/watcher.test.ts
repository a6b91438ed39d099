import { describe, expect, it } from 'vitest';
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
