import { parseEther } from 'viem';
import { describe, expect, it } from 'vitest';
import { cumulativeOf } from '../../src/chain/encode.ts';
import { readDispute, readHoldings } from '../../src/chain/read.ts';
import { deposit } from '../../src/chain/deposit.ts';
import { MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { register } from '../../src/chain/register.ts';
import { registerVoucher } from '../../src/chain/registerVirtual.ts';
import { startWatchtower, type Latest, type Response } from '../../src/chain/watchtower.ts';
import { ChannelKind, type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { ethOutcome, idOf, makeParams, makeState, party, signedBy, signVoucher, useDevnet } from '../../src/testing/chain.ts';

const devnet = useDevnet();

describe('watchtower', () => {
  it('refutes a stale registration with the latest state and raises a low voucher', async () => {
    const d = devnet();
    const [a, b, cheater] = [party(d, 1), party(d, 2), party(d, 3)];
    const ledger = makeParams(d, a, b);
    const history = [1n, 2n, 3n].map((v) => signedBy(ledger, makeState(ledger, v, ethOutcome(v, 10n - v)), a, b));
    const stream = makeParams(d, a, b, ChannelKind.Stream);
    const highest = parseEther('0.3');
    const watched = new Map<Bytes32, Latest>([
      [idOf(ledger), { params: ledger, signed: history[2]! }],
      [idOf(stream), { params: stream, voucher: { cumulative: highest, signature: signVoucher(stream, highest, a) } }],
    ]);
    const responses: Response[] = [];
    const errors: Error[] = [];
    // B watches for itself: its own account answers, so its voucher resolves the stream at once.
    const tower = await startWatchtower(b.client, { confirmations: 1, pollIntervalMs: 20, latest: (id) => watched.get(id) ?? null, onResponse: (r) => responses.push(r), onError: (e) => errors.push(e) });
    try {
      await register(cheater.client, { params: ledger, signed: history[0]! });
      await registerVoucher(cheater.client, { params: stream, cumulative: 1n, signature: signVoucher(stream, 1n, a) });
      await expect.poll(() => responses.length, { timeout: 10_000 }).toBe(2);
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(3n);
      const streamDispute = await readDispute(a.client, idOf(stream));
      expect(cumulativeOf(streamDispute!)).toBe(highest);
      const { timestamp } = await a.client.publicClient.getBlock();
      expect(streamDispute!.timeout).toBeLessThanOrEqual(timestamp);
      // Its own answers are the latest: nothing more to do.
      await d.mine(2);
      await tower.poll();
      expect(responses).toHaveLength(2);
      expect(errors).toEqual([]);
    } finally {
      await tower.stop();
    }
  });

  it('answers a registration made while it was down, when it starts, and concludes at the timeout, paying both out', async () => {
    const d = devnet();
    const [a, b, cheater] = [party(d, 4), party(d, 5), party(d, 6)];
    const ledger = makeParams(d, a, b);
    const history = [1n, 2n].map((v) => signedBy(ledger, makeState(ledger, v, ethOutcome(10n - v, v)), a, b));
    await deposit(a.client, { channelId: idOf(ledger), asset: NATIVE_ASSET, amount: 10n });
    // The cheater registers the old state; nobody watches.
    await register(cheater.client, { params: ledger, signed: history[0]! });
    await d.mine(5);
    const responses: Response[] = [];
    const concluded: Bytes32[] = [];
    const errors: Error[] = [];
    // B's tower starts at the head, long after the registration's event.
    const tower = await startWatchtower(b.client, {
      confirmations: 1,
      pollIntervalMs: 20,
      channels: () => [idOf(ledger)],
      latest: (id) => (id === idOf(ledger) ? { params: ledger, signed: history[1]! } : null),
      holding: (id) => (id === idOf(ledger) ? { params: ledger, signed: history[1]!, virtuals: new Map() } : null),
      onResponse: (r) => responses.push(r),
      onStep: (step, id) => step === 'concluded' && concluded.push(id),
      onError: (e) => errors.push(e),
    });
    try {
      expect(responses).toHaveLength(1);
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(2n);
      // Time travel past the challenge period: the next sweep concludes, and both are paid.
      const before = await d.deployer.publicClient.getBalance({ address: a.client.account });
      await d.increaseTime(MIN_CHALLENGE_DURATION + 1n);
      await tower.poll();
      expect(concluded).toEqual([idOf(ledger)]);
      expect((await readHoldings(a.client, idOf(ledger), NATIVE_ASSET)).concluded).toBe(true);
      // A sent nothing since: its balance rose by exactly what the newest state gives it.
      expect(await d.deployer.publicClient.getBalance({ address: a.client.account })).toBe(before + 8n);
      expect(errors).toEqual([]);
    } finally {
      await tower.stop();
    }
  });

  it('a refutation dropped by a re-org is sent again at the next sweep', async () => {
    const d = devnet();
    const [a, b, cheater] = [party(d, 7), party(d, 8), party(d, 9)];
    const ledger = makeParams(d, a, b);
    const history = [1n, 2n].map((v) => signedBy(ledger, makeState(ledger, v, ethOutcome(10n - v, v)), a, b));
    const responses: Response[] = [];
    const tower = await startWatchtower(b.client, {
      confirmations: 1,
      pollIntervalMs: 20,
      sweepIntervalMs: 60_000,
      channels: () => [idOf(ledger)],
      latest: (id) => (id === idOf(ledger) ? { params: ledger, signed: history[1]! } : null),
      onResponse: (r) => responses.push(r),
    });
    try {
      await register(cheater.client, { params: ledger, signed: history[0]! });
      await d.mine(1);
      await expect.poll(() => responses.length, { timeout: 10_000 }).toBe(1);
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(2n);
      // A re-org drops the blocks from the refutation on: the stale state stands again.
      const refutedIn = responses[0]!.tx.blockNumber;
      const depth = Number((await d.deployer.publicClient.getBlockNumber()) - refutedIn + 1n);
      await d.deployer.publicClient.request({ method: 'anvil_reorg' as never, params: [depth, []] as never });
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(1n);
      // The next sweep reads the registration as it stands, and answers it again.
      await tower.poll();
      expect(responses).toHaveLength(2);
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(2n);
    } finally {
      await tower.stop();
    }
  });

  it('a stale registration replayed by a deeper re-org at the same height is refuted again (the events rewind, no sweep)', async () => {
    const d = devnet();
    const [a, b, cheater] = [party(d, 4), party(d, 5), party(d, 6)];
    const ledger = makeParams(d, a, b);
    const history = [1n, 2n].map((v) => signedBy(ledger, makeState(ledger, v, ethOutcome(10n - v, v)), a, b));
    const responses: Response[] = [];
    const tower = await startWatchtower(b.client, { confirmations: 1, pollIntervalMs: 60_000, latest: (id) => (id === idOf(ledger) ? { params: ledger, signed: history[1]! } : null), onResponse: (r) => responses.push(r) });
    try {
      const stale = await register(cheater.client, { params: ledger, signed: history[0]! });
      await tower.poll();
      expect(responses).toHaveLength(1);
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(2n);
      // The blocks from the stale registration on are replaced; the new first one holds the same registration again.
      const raw = await d.deployer.publicClient.request({ method: 'eth_getRawTransactionByHash' as never, params: [stale.hash] as never });
      const depth = Number((await d.deployer.publicClient.getBlockNumber({ cacheTime: 0 })) - stale.blockNumber + 1n);
      await d.deployer.publicClient.request({ method: 'anvil_reorg' as never, params: [depth, [[raw, 0]]] as never });
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(1n);
      await tower.poll();
      expect(responses).toHaveLength(2);
      expect((await readDispute(a.client, idOf(ledger)))?.version).toBe(2n);
    } finally {
      await tower.stop();
    }
  });
});
