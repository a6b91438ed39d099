// Example tests for virtual channels: a channel A–B locked in parents A–G and G–B is
// registered on its own and released into each concluded parent with a Merkle proof.
import { parseEther } from 'viem';
import { describe, expect, it } from 'vitest';
import { conclude } from '../../src/chain/conclude.ts';
import { concludeVirtual } from '../../src/chain/concludeVirtual.ts';
import { cooperativeClose } from '../../src/chain/cooperativeClose.ts';
import { testTokenAbi } from '../../src/chain/abi.generated.ts';
import { approveDeposits, deposit } from '../../src/chain/deposit.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { writeAdjudicator } from '../../src/chain/client.ts';
import { cumulativeOf, toContractOutcome, toContractParams, toContractSignatures, toContractState, toContractSubAlloc } from '../../src/chain/encode.ts';
import { lockedRoot } from '../../src/model/locked.ts';
import { AdjudicatorRevertError } from '../../src/chain/errors.ts';
import { readDispute, readSettled } from '../../src/chain/read.ts';
import { register } from '../../src/chain/register.ts';
import { registerVirtual, registerVoucher } from '../../src/chain/registerVirtual.ts';
import { MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { ChannelKind, NATIVE_ASSET, type Address, type Allocation, type Params, type SubAlloc } from '../../src/model/types.ts';
import { ethBalance, ethOutcome, idOf, makeParams, makeState, party, signedBy, signVoucher, subAlloc, useDevnet, type Party } from '../../src/testing/chain.ts';

const devnet = useDevnet();
const ONE = parseEther('1');
const T = parseEther('0.5');

async function rejects(promise: Promise<unknown>, name: string): Promise<void> {
  const err = await promise.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(AdjudicatorRevertError);
  expect((err as AdjudicatorRevertError).errorName).toBe(name);
}

interface Network {
  A: Party;
  G: Party;
  B: Party;
  submitter: Party;
  ag: Params;
  gb: Params;
  vc: Params;
}

async function network(d: Devnet, kind: ChannelKind, challengeDuration = MIN_CHALLENGE_DURATION): Promise<Network> {
  const [A, G, B, submitter] = [party(d, 1), party(d, 2), party(d, 3), party(d, 7)];
  const ag = makeParams(d, A, G);
  const gb = makeParams(d, G, B);
  for (const [params, x, y] of [[ag, A, G], [gb, G, B]] as const) {
    await deposit(x.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: ONE });
    await deposit(y.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: ONE });
  }
  return { A, G, B, submitter, ag, gb, vc: makeParams(d, A, B, kind, challengeDuration) };
}

/** Concludes a parent at once with a final state that still locks `locked`. */
async function closeKeepingLocked(n: Network, params: Params, locked: readonly SubAlloc[]) {
  const [x, y] = params === n.ag ? [n.A, n.G] : [n.G, n.B];
  const lockedTotal = locked.reduce((s, l) => s + l.balances[0]!, 0n);
  const state = makeState(params, 10n, ethOutcome(ONE - lockedTotal / 2n, ONE - lockedTotal / 2n, locked), true);
  await cooperativeClose(n.submitter.client, { params, signed: signedBy(params, state, x, y) });
  return state.outcome;
}

async function balances(d: Devnet, n: Network): Promise<bigint[]> {
  return Promise.all([n.A, n.G, n.B].map((p) => ethBalance(d, p.address)));
}

describe('bidirectional virtual channel', () => {
  it('resolves to its registered state in each parent; the gateway gets back what it locked', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Virtual);
    // A–G maps virtual A→A (0), B→G (1); G–B maps A→G (0), B→B (1).
    const agOutcome = await closeKeepingLocked(n, n.ag, [subAlloc(n.vc, [T], [0, 1])]);
    const gbOutcome = await closeKeepingLocked(n, n.gb, [subAlloc(n.vc, [T], [0, 1])]);
    const vcOutcome = ethOutcome(parseEther('0.1'), parseEther('0.4'));
    await registerVirtual(n.submitter.client, { params: n.vc, signed: signedBy(n.vc, makeState(n.vc, 3n, vcOutcome), n.A, n.B) });
    await rejects(concludeVirtual(n.submitter.client, { parent: n.ag, parentOutcome: agOutcome, virtual: n.vc, virtualOutcome: vcOutcome }), 'ChallengePeriodRunning');
    await d.increaseTime(n.vc.challengeDuration);

    const before = await balances(d, n);
    await concludeVirtual(n.submitter.client, { parent: n.ag, parentOutcome: agOutcome, virtual: n.vc, virtualOutcome: vcOutcome });
    await concludeVirtual(n.submitter.client, { parent: n.gb, parentOutcome: gbOutcome, virtual: n.vc, virtualOutcome: vcOutcome });
    const after = await balances(d, n);
    expect(after.map((x, i) => x - before[i]!)).toEqual([parseEther('0.1'), T, parseEther('0.4')]);

    await rejects(concludeVirtual(n.submitter.client, { parent: n.ag, parentOutcome: agOutcome, virtual: n.vc, virtualOutcome: vcOutcome }), 'InvalidProof');
  });

  it('a final virtual state resolves at once; a parent that has not concluded releases nothing', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Virtual);
    const locked = [subAlloc(n.vc, [T], [0, 1])];
    const agState = makeState(n.ag, 4n, ethOutcome(ONE - T / 2n, ONE - T / 2n, locked));
    const vcOutcome = ethOutcome(T, 0n);
    await registerVirtual(n.B.client, { params: n.vc, signed: signedBy(n.vc, makeState(n.vc, 8n, vcOutcome, true), n.A, n.B) });
    await rejects(concludeVirtual(n.submitter.client, { parent: n.ag, parentOutcome: agState.outcome, virtual: n.vc, virtualOutcome: vcOutcome, settled: { lockedRoot: `0x${'00'.repeat(32)}`, held: [T] } }), 'ParentNotConcluded');
    // The parent concludes by dispute and keeps the locked funds.
    await register(n.G.client, { params: n.ag, signed: signedBy(n.ag, agState, n.A, n.G) });
    await d.increaseTime(n.ag.challengeDuration);
    await conclude(n.G.client, { params: n.ag, outcome: agState.outcome });
    expect((await readSettled(n.G.client, idOf(n.ag)))?.held).toEqual([T]);
    const before = await balances(d, n);
    await concludeVirtual(n.submitter.client, { parent: n.ag, parentOutcome: agState.outcome, virtual: n.vc, virtualOutcome: vcOutcome });
    const after = await balances(d, n);
    expect(after[0]! - before[0]!).toBe(T);
    expect(after[1]).toBe(before[1]);
  });
});

describe('stream channel', () => {
  it("the payee's own submission resolves at once; only higher vouchers follow", async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const gbOutcome = await closeKeepingLocked(n, n.gb, [subAlloc(n.vc, [T], [0, 1])]);
    const paid = parseEther('0.3');
    await registerVoucher(n.G.client, { params: n.vc, cumulative: parseEther('0.1'), signature: signVoucher(n.vc, parseEther('0.1'), n.A) });
    await rejects(registerVoucher(n.A.client, { params: n.vc, cumulative: parseEther('0.05'), signature: signVoucher(n.vc, parseEther('0.05'), n.A) }), 'VoucherNotHigher');
    // Only the payee may restate the registered amount (to resolve at once); anyone else must raise it.
    await rejects(registerVoucher(n.submitter.client, { params: n.vc, cumulative: parseEther('0.1'), signature: signVoucher(n.vc, parseEther('0.1'), n.A) }), 'VoucherNotHigher');
    await rejects(registerVoucher(n.G.client, { params: n.vc, cumulative: paid, signature: signVoucher(n.vc, paid, n.B) }), 'InvalidSignature');
    await registerVoucher(n.B.client, { params: n.vc, cumulative: paid, signature: signVoucher(n.vc, paid, n.A) });
    expect(cumulativeOf((await readDispute(n.B.client, idOf(n.vc)))!)).toBe(paid);
    await rejects(registerVoucher(n.B.client, { params: n.vc, cumulative: T, signature: signVoucher(n.vc, T, n.A) }), 'ChallengePeriodOver');

    const before = await balances(d, n);
    await concludeVirtual(n.submitter.client, { parent: n.gb, parentOutcome: gbOutcome, virtual: n.vc });
    const after = await balances(d, n);
    expect([after[1]! - before[1]!, after[2]! - before[2]!]).toEqual([T - paid, paid]);
  });

  it('caps a voucher at the locked amount', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const agOutcome = await closeKeepingLocked(n, n.ag, [subAlloc(n.vc, [T], [0, 1])]);
    await registerVoucher(n.B.client, { params: n.vc, cumulative: 5n * T, signature: signVoucher(n.vc, 5n * T, n.A) });
    const before = await balances(d, n);
    await concludeVirtual(n.submitter.client, { parent: n.ag, parentOutcome: agOutcome, virtual: n.vc });
    const after = await balances(d, n);
    expect([after[0]! - before[0]!, after[1]! - before[1]!]).toEqual([0n, T]);
  });

  it('a voucher of 2^128 or more is stored as 2^128 - 1 and still pays the payee the whole lock', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const agOutcome = await closeKeepingLocked(n, n.ag, [subAlloc(n.vc, [T], [0, 1])]);
    await registerVoucher(n.G.client, { params: n.vc, cumulative: 1n << 128n, signature: signVoucher(n.vc, 1n << 128n, n.A) });
    expect(cumulativeOf((await readDispute(n.B.client, idOf(n.vc)))!)).toBe((1n << 128n) - 1n);
    // Beyond the cap, higher amounts are all equal: only the payee's restatement resolves.
    await rejects(registerVoucher(n.G.client, { params: n.vc, cumulative: (1n << 256n) - 1n, signature: signVoucher(n.vc, (1n << 256n) - 1n, n.A) }), 'VoucherNotHigher');
    await registerVoucher(n.B.client, { params: n.vc, cumulative: (1n << 256n) - 1n, signature: signVoucher(n.vc, (1n << 256n) - 1n, n.A) });
    const before = await balances(d, n);
    await concludeVirtual(n.submitter.client, { parent: n.ag, parentOutcome: agOutcome, virtual: n.vc });
    const after = await balances(d, n);
    expect([after[0]! - before[0]!, after[1]! - before[1]!]).toEqual([0n, T]);
  });
});

describe('siblings', () => {
  it('each sibling releases on its own with a proof over the updated root', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const vcs = [n.vc, makeParams(d, n.A, n.B, ChannelKind.Stream), makeParams(d, n.A, n.B, ChannelKind.Stream)];
    const amount = parseEther('0.1');
    const gbOutcome = await closeKeepingLocked(n, n.gb, vcs.map((vc) => subAlloc(vc, [amount], [0, 1])));
    for (const [i, vc] of [vcs[2]!, vcs[0]!, vcs[1]!].entries()) {
      const paid = BigInt(i + 1) * parseEther('0.01');
      await registerVoucher(n.B.client, { params: vc, cumulative: paid, signature: signVoucher(vc, paid, n.A) });
      const before = await ethBalance(d, n.B.address);
      await concludeVirtual(n.submitter.client, { parent: n.gb, parentOutcome: gbOutcome, virtual: vc });
      expect(await ethBalance(d, n.B.address)).toBe(before + paid);
    }
    expect((await readSettled(n.G.client, idOf(n.gb)))?.held).toEqual([0n]);
  });
});

describe('virtual channels over two assets (ETH and ERC20)', () => {
  /** Parents holding ETH and 100 tokens each, concluded with the virtual channel locking T ETH and 100 tokens. */
  async function twoAssetNetwork(d: Devnet, kind: ChannelKind) {
    const n = await network(d, kind);
    for (const [params, funder] of [[n.ag, n.A], [n.gb, n.G]] as const) {
      const hash = await funder.client.walletClient.writeContract({ address: d.token, abi: testTokenAbi, functionName: 'mint', args: [funder.address, 100n] });
      await funder.client.publicClient.waitForTransactionReceipt({ hash });
      await approveDeposits(funder.client, d.token, 100n);
      await deposit(funder.client, { channelId: idOf(params), asset: d.token, amount: 100n });
    }
    const sub = subAlloc(n.vc, [T, 100n], [0, 1]);
    const parentOutcome: Allocation = { assets: [NATIVE_ASSET, d.token], balances: [[ONE - T / 2n, ONE - T / 2n], [0n, 0n]], locked: [sub] };
    for (const [p, x, y] of [[n.ag, n.A, n.G], [n.gb, n.G, n.B]] as const) {
      await cooperativeClose(n.submitter.client, { params: p, signed: signedBy(p, makeState(p, 2n, parentOutcome, true), x, y) });
    }
    const tokenOf = (who: Address) => d.deployer.publicClient.readContract({ address: d.token, abi: testTokenAbi, functionName: 'balanceOf', args: [who] });
    /** Releases into both parents; returns the ETH and token each of A, G, B received. */
    const releaseBoth = async (virtualOutcome?: Allocation): Promise<{ eth: bigint[]; tokens: bigint[] }> => {
      const eth = await balances(d, n);
      const tokens = await Promise.all([n.A, n.G, n.B].map((p) => tokenOf(p.address)));
      for (const parent of [n.ag, n.gb]) await concludeVirtual(n.submitter.client, { parent, parentOutcome, virtual: n.vc, virtualOutcome });
      const ethAfter = await balances(d, n);
      const tokensAfter = await Promise.all([n.A, n.G, n.B].map((p) => tokenOf(p.address)));
      return { eth: ethAfter.map((x, i) => x - eth[i]!), tokens: tokensAfter.map((x, i) => x - tokens[i]!) };
    };
    return { n, releaseBoth };
  }

  it('releases each asset by address, whatever order the virtual outcome lists them in', async () => {
    const { n, releaseBoth } = await twoAssetNetwork(devnet(), ChannelKind.Virtual);
    // The virtual outcome lists the token first: B ends with 0.2 ETH and 30 tokens.
    const vcOutcome: Allocation = { assets: [devnet().token, NATIVE_ASSET], balances: [[70n, 30n], [T - parseEther('0.2'), parseEther('0.2')]], locked: [] };
    await registerVirtual(n.B.client, { params: n.vc, signed: signedBy(n.vc, makeState(n.vc, 5n, vcOutcome, true), n.A, n.B) });
    const got = await releaseBoth(vcOutcome);
    expect(got.eth).toEqual([T - parseEther('0.2'), T, parseEther('0.2')]);
    expect(got.tokens).toEqual([70n, 100n, 30n]);
  });

  it('a stream voucher pays in the first asset only', async () => {
    const { n, releaseBoth } = await twoAssetNetwork(devnet(), ChannelKind.Stream);
    const paid = parseEther('0.1');
    await registerVoucher(n.B.client, { params: n.vc, cumulative: paid, signature: signVoucher(n.vc, paid, n.A) });
    const got = await releaseBoth();
    expect(got.eth).toEqual([T - paid, T, paid]);
    expect(got.tokens).toEqual([100n, 100n, 0n]);
  });
});

describe('refusals', () => {
  it('wrong kinds and mismatched sub-allocations are typed reverts', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const streamState = signedBy(n.vc, makeState(n.vc, 1n, ethOutcome(T, 0n)), n.A, n.B);
    await rejects(writeAdjudicator(n.A.client, 'register', [toContractParams(n.vc, n.A.client), toContractState(streamState.state), toContractSignatures(streamState)]), 'WrongKind');
    await rejects(writeAdjudicator(n.A.client, 'conclude', [toContractParams(n.vc, n.A.client), toContractOutcome(ethOutcome(T, 0n))]), 'WrongKind');
    await rejects(writeAdjudicator(n.A.client, 'registerVoucher', [toContractParams(n.ag, n.A.client), 0n, { r: idOf(n.ag), s: idOf(n.ag), v: 0 }]), 'WrongKind');
    await rejects(writeAdjudicator(n.A.client, 'depositMany', [[idOf(n.ag)], NATIVE_ASSET, [1n, 2n]]), 'LengthMismatch');

    const other = makeParams(d, n.A, n.B, ChannelKind.Stream);
    const gbOutcome = await closeKeepingLocked(n, n.gb, [subAlloc(n.vc, [T], [0, 1])]);
    await registerVoucher(n.B.client, { params: n.vc, cumulative: 0n, signature: null });
    // The parent locks n.vc, not `other`; and a forged sub-allocation does not match the root.
    await expect(concludeVirtual(n.submitter.client, { parent: n.gb, parentOutcome: gbOutcome, virtual: other })).rejects.toBeInstanceOf(RangeError);
    const settled = { assets: gbOutcome.assets, lockedRoot: lockedRoot(gbOutcome.locked), held: [T] };
    const releaseWith = (sub: SubAlloc) =>
      writeAdjudicator(n.submitter.client, 'release', [toContractParams(n.gb, n.A.client), settled, toContractSubAlloc(sub), [], toContractParams(n.vc, n.A.client), toContractOutcome(ethOutcome(0n, 0n))]);
    await rejects(releaseWith(subAlloc(n.vc, [2n * T], [0, 1])), 'InvalidProof');
    await rejects(releaseWith(subAlloc(n.vc, [T], [0, 2] as unknown as [number, number])), 'InvalidIndexMap');
    await rejects(releaseWith(subAlloc(other, [T], [0, 1])), 'SubAllocMismatch');
    await rejects(releaseWith(subAlloc(n.vc, [T, T], [0, 1])), 'SubAllocMismatch');
    await concludeVirtual(n.submitter.client, { parent: n.gb, parentOutcome: gbOutcome, virtual: n.vc });
  });
});
