// The on-chain settlement of a ledger channel with the virtual channels it locks
// (src/chain/settle.ts), driven by each party from what it holds, against a real anvil:
// a vanished payer, a stale registration, two devices colluding, racing submitters, and a
// store that is not the newest. Gas is paid by separate accounts, so every participant's
// balance changes by exactly what the contract pays it.
import { parseEther } from 'viem';
import { describe, expect, it } from 'vitest';
import { advanceSettlement, type Holding, type Settlement, type VirtualEvidence } from '../../src/chain/settle.ts';
import { deposit } from '../../src/chain/deposit.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { SettlementError } from '../../src/chain/errors.ts';
import { readDispute, readEvents } from '../../src/chain/read.ts';
import { adjudicatorAbi } from '../../src/chain/abi.generated.ts';
import { register } from '../../src/chain/register.ts';
import { ChannelKind, NATIVE_ASSET, type Params, type SignedState } from '../../src/model/types.ts';
import { ethBalance, ethOutcome, idOf, makeParams, makeState, party, signedBy, signVoucher, subAlloc, useDevnet, type Party } from '../../src/testing/chain.ts';

const devnet = useDevnet();
const ONE = parseEther('1');
const T = parseEther('0.5');

interface Network {
  A: Party;
  G: Party;
  B: Party;
  /** Gas accounts: the gateway's and a tower's (not participants). */
  gGas: Party;
  bGas: Party;
  ag: Params;
  gb: Params;
  vc: Params;
  /** Both parents at version 5, each locking T for the virtual channel. */
  agSigned: SignedState;
  gbSigned: SignedState;
}

async function network(d: Devnet, kind: ChannelKind): Promise<Network> {
  const [A, G, B, gGas, bGas] = [party(d, 1), party(d, 2), party(d, 3), party(d, 7), party(d, 8)];
  const ag = makeParams(d, A, G);
  const gb = makeParams(d, G, B);
  for (const [params, x, y] of [[ag, A, G], [gb, G, B]] as const) {
    await deposit(x.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: ONE });
    await deposit(y.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: ONE });
  }
  const vc = makeParams(d, A, B, kind);
  const locked = [subAlloc(vc, [T], [0, 1])];
  const agSigned = signedBy(ag, makeState(ag, 5n, ethOutcome(ONE - T, ONE, locked)), A, G);
  const gbSigned = signedBy(gb, makeState(gb, 5n, ethOutcome(ONE - T, ONE, locked)), G, B);
  return { A, G, B, gGas, bGas, ag, gb, vc, agSigned, gbSigned };
}

const holding = (params: Params, signed: SignedState, vc: VirtualEvidence): Holding => ({ params, signed, virtuals: new Map([[idOf(vc.params), vc]]) });

/** What the payee B holds of the stream: A's voucher for `paid`. */
const payeeHolds = (n: Network, paid: bigint): VirtualEvidence => ({ params: n.vc, voucher: { cumulative: paid, signature: signVoucher(n.vc, paid, n.A) } });

async function balances(d: Devnet, n: Network): Promise<bigint[]> {
  return Promise.all([n.A, n.G, n.B].map((p) => ethBalance(d, p.address)));
}

/** Runs each party's settlement, moving chain time over each period it waits for, until all are settled. */
async function settleAll(d: Devnet, parties: [Party, Holding][]): Promise<void> {
  for (let step = 0; step < 10; step++) {
    const results: Settlement[] = [];
    for (const [payer, h] of parties) results.push(await advanceSettlement(payer.client, h));
    if (results.every((r) => r.status === 'settled')) return;
    const { timestamp } = await d.deployer.publicClient.getBlock();
    const until = results.flatMap((r) => (r.status === 'waiting' ? [r.until] : []));
    const next = until.reduce((a, b) => (a < b ? a : b));
    await d.increaseTime(next > timestamp ? next - timestamp : 1n);
  }
  throw new Error('not settled in 10 steps');
}

describe('on-chain settlement', () => {
  it('a payer vanishes with a stream open: the gateway refutes its stale state, both parents conclude, the payee is paid its highest voucher, the gateway gets back what it locked', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const paid = parseEther('0.3');
    // The payer registered an old state of its parent, without the lock, before vanishing.
    await register(n.A.client, { params: n.ag, signed: signedBy(n.ag, makeState(n.ag, 2n, ethOutcome(ONE, ONE)), n.A, n.G) });
    const before = await balances(d, n);
    const gateway = { params: n.vc };
    const payee = payeeHolds(n, paid);
    const steps: string[] = [];
    const first = await advanceSettlement(n.gGas.client, holding(n.ag, n.agSigned, gateway), { onStep: (s) => steps.push(s) });
    expect(first.status).toBe('waiting');
    expect((await readDispute(n.G.client, idOf(n.ag)))?.version).toBe(5n);
    await settleAll(d, [
      [n.gGas, holding(n.ag, n.agSigned, gateway)],
      [n.gGas, holding(n.gb, n.gbSigned, gateway)],
      [n.bGas, holding(n.gb, n.gbSigned, payee)],
    ]);
    const after = await balances(d, n);
    expect(after.map((x, i) => x - before[i]!)).toEqual([ONE - paid, 2n * ONE, ONE + paid]);
    expect(steps).toEqual(['registered']);
  });

  it('two devices collude on a bidirectional channel and resolve it against one parent: the gateway resolves the other and loses nothing', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Virtual);
    // A and B sign a state giving B everything locked; B settles its parent with it, alone.
    const colluded = signedBy(n.vc, makeState(n.vc, 9n, ethOutcome(0n, T)), n.A, n.B);
    // A state whose outcome hides behind a locked root is refused: its outcome is always on-chain in full.
    const hidden = signedBy(n.vc, makeState(n.vc, 10n, ethOutcome(0n, T, [subAlloc(n.ag, [1n], [0, 1])])), n.A, n.B);
    await expect(register(n.bGas.client, { params: n.vc, signed: hidden })).rejects.toThrow(/InvalidOutcome/);
    const before = await balances(d, n);
    const gateway = { params: n.vc, signed: signedBy(n.vc, makeState(n.vc, 0n, ethOutcome(T, 0n)), n.A, n.B) };
    await settleAll(d, [[n.bGas, holding(n.gb, n.gbSigned, { params: n.vc, signed: colluded })]]);
    // The gateway holds only version 0: it still releases the other parent with the registered outcome, read from its VirtualOutcome event.
    await settleAll(d, [
      [n.gGas, holding(n.ag, n.agSigned, gateway)],
      [n.gGas, holding(n.gb, n.gbSigned, gateway)],
    ]);
    const after = await balances(d, n);
    expect(after.map((x, i) => x - before[i]!)).toEqual([ONE - T, 2n * ONE, ONE + T]);
  });

  it('parties racing each other through the same steps all end settled, each paid once', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const paid = parseEther('0.2');
    const payee = payeeHolds(n, paid);
    const before = await balances(d, n);
    for (let step = 0; step < 10; step++) {
      const results = await Promise.all([
        advanceSettlement(n.gGas.client, holding(n.gb, n.gbSigned, { params: n.vc })),
        advanceSettlement(n.bGas.client, holding(n.gb, n.gbSigned, payee)),
        advanceSettlement(party(d, 9).client, holding(n.gb, n.gbSigned, payee)),
      ]);
      if (results.every((r) => r.status === 'settled')) break;
      await d.increaseTime(n.gb.challengeDuration);
    }
    await settleAll(d, [[n.gGas, holding(n.ag, n.agSigned, { params: n.vc })]]);
    const after = await balances(d, n);
    expect(after.map((x, i) => x - before[i]!)).toEqual([ONE - paid, 2n * ONE, ONE + paid]);
  });

  it("the gateway withholds its acceptance of the payee's last proposal and concludes it: the payee settles from its own proposal", async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const paid = parseEther('0.1');
    const payee = payeeHolds(n, paid);
    // B proposed version 6 (a payment to G, the lock kept); G signed it but B never got G's signature.
    const proposed = makeState(n.gb, 6n, ethOutcome(ONE - T + 1n, ONE - 1n, n.gbSigned.state.outcome.locked));
    const gHolds = signedBy(n.gb, proposed, n.G, n.B);
    await register(n.G.client, { params: n.gb, signed: gHolds });
    // Without its proposal it could not: the registered state is not one it holds fully signed.
    await expect(advanceSettlement(n.bGas.client, holding(n.gb, n.gbSigned, payee))).rejects.toThrow(/newer than this party/);
    const before = await balances(d, n);
    const bHolds: Holding = { ...holding(n.gb, n.gbSigned, payee), proposed };
    await settleAll(d, [[n.bGas, bHolds]]);
    const after = await balances(d, n);
    // B's balance per its own proposal, plus its voucher from the lock; G the rest of both.
    expect(after[2]! - before[2]!).toBe(ONE - 1n + paid);
    expect(after[1]! - before[1]!).toBe(ONE - T + 1n + T - paid);
  });

  it('reads events in windows a hosted node accepts, from the adjudicator block on', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    await register(n.G.client, { params: n.gb, signed: n.gbSigned });
    await d.mine(25);
    await register(n.G.client, { params: n.ag, signed: n.agSigned });
    const head = await d.deployer.publicClient.getBlockNumber();
    const windows: [bigint, bigint][] = [];
    const client = { ...n.gGas.client, publicClient: new Proxy(n.gGas.client.publicClient, { get: (target, key) => (key === 'getContractEvents' ? (q: { fromBlock: bigint; toBlock: bigint }) => (windows.push([q.fromBlock, q.toBlock]), target.getContractEvents(q as never)) : Reflect.get(target, key)) }) };
    const found = await readEvents(client, 'Released', {}, { window: 10n });
    // The same as one query over the whole range (earlier tests released into other parents).
    const all = await d.deployer.publicClient.getContractEvents({ address: d.deployer.adjudicator, abi: adjudicatorAbi, eventName: 'Released', fromBlock: 0n, toBlock: head, strict: true });
    expect(found.map((l) => l.transactionHash)).toEqual(all.map((l) => l.transactionHash));
    expect(found.length).toBeGreaterThan(0);
    expect(windows.length).toBeGreaterThan(2);
    expect(windows.every(([from, to]) => to - from < 10n)).toBe(true);
    expect(windows.slice(1).every(([from], i) => from === windows[i]![1] + 1n)).toBe(true);
    expect(windows[0]![0]).toBe(0n);
    expect(windows.at(-1)![1]).toBe(head);
    // From the client's deployment block on, when it knows it.
    windows.length = 0;
    await readEvents({ ...client, fromBlock: head - 3n }, 'Released', {}, { window: 10n });
    expect(windows).toEqual([[head - 3n, head]]);
  });

  it('a store that is not the newest sends nothing; a lock it does not know stops it', async () => {
    const d = devnet();
    const n = await network(d, ChannelKind.Stream);
    const newer = signedBy(n.gb, makeState(n.gb, 7n, ethOutcome(ONE - T, ONE, n.gbSigned.state.outcome.locked)), n.G, n.B);
    await register(n.B.client, { params: n.gb, signed: newer });
    const nonce = await d.deployer.publicClient.getTransactionCount({ address: n.gGas.address });
    await expect(advanceSettlement(n.gGas.client, holding(n.gb, n.gbSigned, { params: n.vc }))).rejects.toThrow(SettlementError);
    expect(await d.deployer.publicClient.getTransactionCount({ address: n.gGas.address })).toBe(nonce);
    await d.increaseTime(n.gb.challengeDuration);
    await expect(advanceSettlement(n.gGas.client, { params: n.gb, signed: newer, virtuals: new Map() })).rejects.toThrow(/does not know/);
  });
});
