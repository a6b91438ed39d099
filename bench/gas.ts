// Gas benchmark: receipts' gasUsed on anvil (21k base included), payout addresses already
// funded, 2 parties depositing 1 ETH each, as DESIGN.md's reference figures were measured.
// Writes bench/results/gas.json and prints a table beside the reference figures.
// Standalone: `npx tsx bench/gas.ts`.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEther } from 'viem';
import { conclude } from '../src/chain/conclude.ts';
import { concludeVirtual } from '../src/chain/concludeVirtual.ts';
import { cooperativeClose } from '../src/chain/cooperativeClose.ts';
import { deposit, depositMany } from '../src/chain/deposit.ts';
import { startDevnet, type Devnet } from '../src/chain/devnet.ts';
import { register } from '../src/chain/register.ts';
import { registerVoucher } from '../src/chain/registerVirtual.ts';
import { ChannelKind, NATIVE_ASSET, type SubAlloc } from '../src/model/types.ts';
import { printTable, writeResults } from './table.ts';
import { ethOutcome, idOf, makeParams, makeState, party, signedBy, signVoucher, subAlloc, type Party } from '../src/testing/chain.ts';

const ONE = parseEther('1');

/** The reference figures from DESIGN.md and the targets from issue 3. */
export const REFERENCE = {
  coopLifecycle: { target: 150_000, nitro: 168_536, perun: 318_974 },
  disputeLifecycle: { target: 220_000, nitro: 250_756, perun: 372_237 },
  // Perun's equivalent path: registers 187,173 + ~157,800, concludes 123,683 + ~127,000, four withdrawals ~166,000.
  virtualDispute: { target: 350_000, nitro: undefined, perun: 760_000 },
} as const;

async function fundedLedger(devnet: Devnet, a: Party, b: Party): Promise<{ gas: bigint; params: ReturnType<typeof makeParams> }> {
  const params = makeParams(devnet, a, b);
  const id = idOf(params);
  const d1 = await deposit(a.client, { channelId: id, asset: NATIVE_ASSET, amount: ONE });
  const d2 = await deposit(b.client, { channelId: id, asset: NATIVE_ASSET, amount: ONE });
  return { gas: d1.gasUsed + d2.gasUsed, params };
}

/** 2 deposits + cooperative close with both paid. */
async function coopLifecycle(devnet: Devnet): Promise<number> {
  const [a, b] = [party(devnet, 1), party(devnet, 2)];
  const { gas, params } = await fundedLedger(devnet, a, b);
  const final = makeState(params, 7n, ethOutcome(parseEther('0.7'), parseEther('1.3')), true);
  const close = await cooperativeClose(a.client, { params, signed: signedBy(params, final, a, b) });
  return Number(gas + close.gasUsed);
}

/** 2 deposits + register + wait + conclude (both paid in the same transaction). */
async function disputeLifecycle(devnet: Devnet): Promise<number> {
  const [a, b] = [party(devnet, 1), party(devnet, 2)];
  const { gas, params } = await fundedLedger(devnet, a, b);
  const state = makeState(params, 9n, ethOutcome(parseEther('0.6'), parseEther('1.4')));
  const reg = await register(a.client, { params, signed: signedBy(params, state, a, b) });
  await devnet.increaseTime(params.challengeDuration);
  const done = await conclude(a.client, { params, outcome: state.outcome });
  return Number(gas + reg.gasUsed + done.gasUsed);
}

/**
 * A stream channel A→B through G whose payee B vanished, with `siblings` other virtual
 * channels still open on each parent. A and G close A–G cooperatively at A's highest
 * voucher; G registers G–B and the voucher, waits, concludes G–B and releases the
 * stream channel's funds in it. Deposits excluded.
 */
async function virtualDispute(devnet: Devnet, siblings: number): Promise<number> {
  const [A, G, B] = [party(devnet, 1), party(devnet, 2), party(devnet, 3)];
  const locked = parseEther('0.5');
  const paid = parseEther('0.3');
  const sibling = parseEther('0.01');
  const vc = makeParams(devnet, A, B, ChannelKind.Stream);
  const others = (indexMap: readonly [number, number]): SubAlloc[] =>
    Array.from({ length: siblings }, () => subAlloc(makeParams(devnet, A, B, ChannelKind.Stream), [sibling], indexMap));
  const siblingTotal = sibling * BigInt(siblings);

  const { params: ag } = await fundedLedger(devnet, A, G);
  const { params: gb } = await fundedLedger(devnet, G, B);

  // A–G: A's free balance funded the stream; closing merges A's highest voucher into the balances.
  const agFinal = makeState(ag, 20n, ethOutcome(ONE - locked + (locked - paid), ONE + paid - siblingTotal, others([0, 1])), true);
  const txs = [await cooperativeClose(G.client, { params: ag, signed: signedBy(ag, agFinal, A, G) })];

  // G–B: G mirrored the stream's funds; B is gone, so G registers the latest state and the voucher.
  const gbLocked = [subAlloc(vc, [locked], [0, 1]), ...others([0, 1])];
  const gbState = makeState(gb, 11n, ethOutcome(ONE - locked - siblingTotal, ONE, gbLocked));
  txs.push(await register(G.client, { params: gb, signed: signedBy(gb, gbState, G, B) }));
  txs.push(await registerVoucher(G.client, { params: vc, cumulative: paid, signature: signVoucher(vc, paid, A) }));
  await devnet.increaseTime(gb.challengeDuration);
  txs.push(await conclude(G.client, { params: gb, outcome: gbState.outcome }));
  txs.push(await concludeVirtual(G.client, { parent: gb, parentOutcome: gbState.outcome, virtual: vc }));
  return txs.reduce((sum, tx) => sum + Number(tx.gasUsed), 0);
}

async function depositMany10(devnet: Devnet): Promise<number> {
  const g = party(devnet, 2);
  const deposits = Array.from({ length: 10 }, (_, i) => ({ channelId: idOf(makeParams(devnet, g, party(devnet, 3 + (i % 5)))), amount: ONE }));
  return Number((await depositMany(g.client, { asset: NATIVE_ASSET, deposits })).gasUsed);
}

export interface GasResults {
  coopLifecycle: number;
  disputeLifecycle: number;
  virtualDispute: number;
  virtualDisputeSiblings: { '0': number; '1': number; '10': number };
  /** One depositMany funding 10 fresh channels in ETH (the gateway funding devices). */
  depositMany10: number;
}

/** Runs every measured path on `devnet` (also used by test/chain/gas.test.ts). */
export async function measureGas(devnet: Devnet): Promise<GasResults> {
  const siblings = {
    '0': await virtualDispute(devnet, 0),
    '1': await virtualDispute(devnet, 1),
    '10': await virtualDispute(devnet, 10),
  };
  return {
    coopLifecycle: await coopLifecycle(devnet),
    disputeLifecycle: await disputeLifecycle(devnet),
    virtualDispute: siblings['0'],
    virtualDisputeSiblings: siblings,
    depositMany10: await depositMany10(devnet),
  };
}

export async function runGasBench(): Promise<Record<string, unknown>> {
  const devnet = await startDevnet();
  try {
    const measured = await measureGas(devnet);
    const siblings = measured.virtualDisputeSiblings;
    const siblingsMaxIncrease = Math.max(...Object.values(siblings)) / siblings['0'] - 1;
    const results = { unit: 'gas: receipts gasUsed on anvil, 21k base included', ...measured, siblingsMaxIncrease: Number(siblingsMaxIncrease.toFixed(4)), reference: REFERENCE };
    writeResults('gas', results);

    const cell = (n: number | undefined): string | number => n ?? '';
    printTable(
      'gas (anvil receipts, 21k base included)',
      ['path', 'picopay', 'target', 'Nitro', 'Perun'],
      (Object.keys(REFERENCE) as (keyof typeof REFERENCE)[]).map((path) => [path, measured[path], REFERENCE[path].target, cell(REFERENCE[path].nitro), REFERENCE[path].perun]),
    );
    printTable(
      'virtualDispute with other virtual channels open on each parent (must stay within 5% of 0)',
      ['siblings', 'gas', 'vs 0'],
      Object.entries(siblings).map(([n, gas]) => [n, gas, `${((gas / siblings['0'] - 1) * 100).toFixed(2)}%`]),
    );
    printTable('batch deposit', ['path', 'gas', 'per channel'], [['depositMany, 10 channels', measured.depositMany10, Math.round(measured.depositMany10 / 10)]]);
    return results;
  } finally {
    await devnet.stop();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runGasBench().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
