// The adjudicator fuzzed with ARBITRARY inputs: fast-check call sequences on anvil with
// any uint64 durations and versions, any outcome shapes (no rows, extra rows, repeated and
// unfunded assets, nine assets), locked entries of any shape, amounts up to 2^256 - 1,
// forged signatures, an ERC20 that switches between honest, returning false, charging a fee,
// re-entering and burning gas and blocks receivers, and participants whose code reverts or
// burns gas.
//
// Invariants:
// - solvency: after every call, the contract holds, per asset, at least what it still owes:
//   the holdings of every open channel, the Settled amounts of every concluded one, and
//   every credit (a bystander channel's untouched deposit makes any overpayment show);
// - no call fails except by a typed revert of the contract (never a panic);
// - afterwards, whatever happened: a final state both signed closes every ledger channel
//   that has not concluded, every virtual and stream channel resolves and releases into
//   both parents, and the gateway gets back exactly what it locked (received plus credited).
import fc from 'fast-check';
import { createTestClient, createWalletClient, http, parseEther } from 'viem';
import { describe, expect, it } from 'vitest';
import type { ChainClient } from '../../src/chain/client.ts';
import { conclude } from '../../src/chain/conclude.ts';
import { concludeVirtual } from '../../src/chain/concludeVirtual.ts';
import { deposit, depositMany } from '../../src/chain/deposit.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { AdjudicatorRevertError } from '../../src/chain/errors.ts';
import { adjudicatorAbi } from '../../src/chain/abi.generated.ts';
import { readDispute, readHoldings, readSettled } from '../../src/chain/read.ts';
import { register } from '../../src/chain/register.ts';
import { registerVoucher } from '../../src/chain/registerVirtual.ts';
import { readCredit, withdraw } from '../../src/chain/withdraw.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { MAX_CHALLENGE_DURATION, MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { outcomeHash } from '../../src/model/hash.ts';
import { ChannelKind, NATIVE_ASSET, type Address, type Allocation, type Bytes32, type Params, type State, type SubAlloc } from '../../src/model/types.ts';
import { ethBalance, idOf, signState, signVoucher, useDevnet } from '../../src/testing/chain.ts';
import { fundedToken, placeReceiver, ReceiverMode, registerCalldata, TokenMode, type HostileToken } from './hostile.ts';

const devnet = useDevnet();
const UINT64_MAX = (1n << 64n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;
const NO_CODE: Address = '0x00000000000000000000000000000000000c0de0';
let nonce = 9_000_000n;
const RUNS = Number(process.env.PICOPAY_FUZZ_RUNS ?? 25);

// ---------------------------------------------------------------- arbitrary inputs

const u64 = fc.oneof(fc.bigInt({ min: 0n, max: 12n }), fc.bigInt({ min: 0n, max: UINT64_MAX }), fc.constantFrom(UINT64_MAX, 1n << 62n, MIN_CHALLENGE_DURATION, MAX_CHALLENGE_DURATION + 1n));
const u256 = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 1000n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: UINT256_MAX }) },
  { weight: 1, arbitrary: fc.constantFrom((1n << 255n) - 1n, 1n << 255n, UINT256_MAX, (1n << 128n) - 1n, 1n << 128n) },
);
/** 0 ETH, 1 the hostile token, 2 an address with no code. */
const assetIndex = fc.nat(2);
/** Ledger A–G, ledger G–B, the bystander, the virtual channel, the stream channel. */
const channelIndex = fc.nat(4);
const rarely = fc.integer({ min: 0, max: 4 }).map((x) => x === 0);
const anyOutcome = fc.record({
  assets: fc.array(assetIndex, { maxLength: 9 }),
  balances: fc.array(fc.tuple(u256, u256), { maxLength: 9 }),
  locked: fc.array(fc.record({ sub: fc.nat(1), balances: fc.array(u256, { maxLength: 3 }), indexMap: fc.tuple(fc.nat(2), fc.nat(2)) }), { maxLength: 3 }),
});
/** Well-formed by the model's rules (distinct assets, a row and a locked amount per asset), any amounts. */
const wellFormedOutcome = fc.shuffledSubarray([0, 1, 2], { minLength: 1 }).chain((assets) =>
  fc.record({
    assets: fc.constant(assets),
    balances: fc.array(fc.tuple(u256, u256), { minLength: assets.length, maxLength: assets.length }),
    locked: fc.array(fc.record({ sub: fc.nat(1), balances: fc.array(u256, { minLength: assets.length, maxLength: assets.length }), indexMap: fc.constant([0, 1] as [number, number]) }), { maxLength: 2 }),
  }),
);
const outcome = fc.oneof({ weight: 3, arbitrary: wellFormedOutcome }, { weight: 1, arbitrary: anyOutcome });

const action = fc.oneof(
  { weight: 2, arbitrary: fc.record({ t: fc.constant('deposit' as const), ch: channelIndex, asset: assetIndex, amount: u256 }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('depositMany' as const), asset: assetIndex, entries: fc.array(fc.record({ ch: channelIndex, amount: u256 }), { minLength: 1, maxLength: 4 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('register' as const), ch: fc.constantFrom(0, 1, 3), version: u64, outcome, isFinal: rarely, forged: rarely }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('voucher' as const), cumulative: u256, byPayee: fc.boolean(), forged: rarely }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('conclude' as const), ch: fc.nat(1) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), parent: fc.nat(1), sub: fc.nat(1) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('time' as const), seconds: fc.oneof(fc.bigInt({ min: 1n, max: 600n }), fc.constantFrom(MIN_CHALLENGE_DURATION, MAX_CHALLENGE_DURATION)) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('tokenMode' as const), mode: fc.constantFrom(...Object.values(TokenMode)) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('block' as const), who: fc.nat(2), blocked: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('withdraw' as const), asset: assetIndex, to: fc.nat(2) }) },
);
type Action = typeof action extends fc.Arbitrary<infer T> ? T : never;
type RawOutcome = typeof anyOutcome extends fc.Arbitrary<infer T> ? T : never;

const world = fc.record({
  durations: fc.tuple(u64, u64, u64, u64),
  receivers: fc.tuple(fc.constantFrom(null, ReceiverMode.Revert, ReceiverMode.BurnGas), fc.constantFrom(null, ReceiverMode.Revert, ReceiverMode.BurnGas)),
  finalMode: fc.constantFrom(...Object.values(TokenMode)),
  locks: fc.tuple(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: 1000n })),
  resolution: fc.tuple(u256, u256),
  actions: fc.array(action, { minLength: 4, maxLength: 30 }),
});

// ---------------------------------------------------------------- helpers


/** A client that sends as `address` (anvil impersonation), for a payee that submits itself. */
async function impersonate(d: Devnet, address: Address): Promise<ChainClient> {
  const test = createTestClient({ mode: 'anvil', transport: http(d.anvil.rpcUrl) });
  await test.impersonateAccount({ address });
  await test.setBalance({ address, value: parseEther('100') });
  const walletClient = createWalletClient({ chain: d.deployer.walletClient.chain, transport: http(d.anvil.rpcUrl), account: address, pollingInterval: 20 });
  return { ...d.deployer, account: address, walletClient: walletClient as unknown as ChainClient['walletClient'] };
}

/** Calls that went through, per kind: printed with PICOPAY_FUZZ_REPORT=1 to see what the inputs reach. */
const succeeded = new Map<string, number>();

/** A typed refusal of the contract is an expected outcome; a panic or anything else is a bug. */
async function attempt(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    return true;
  } catch (err) {
    if (err instanceof AdjudicatorRevertError && err.errorName !== 'Panic' && err.errorName !== 'Error') {
      succeeded.set(`refused: ${err.errorName}`, (succeeded.get(`refused: ${err.errorName}`) ?? 0) + 1);
      return false;
    }
    if (err instanceof RangeError) return false; // the client refused before sending
    throw err;
  }
}

describe('adjudicator under arbitrary inputs', () => {
  it('stays solvent, never panics, and every channel can still close, resolve and release', { timeout: 60_000 + RUNS * 3_000 }, async () => {
    const d = devnet();
    const submitter = d.clients[1]!;
    const token: HostileToken = await fundedToken(submitter, UINT256_MAX);
    const assets: Address[] = [NATIVE_ASSET, token.address, NO_CODE];
    const bystander = idOf({ chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator, participants: [NO_CODE, NO_CODE], challengeDuration: 0n, nonce: 0n, kind: ChannelKind.Ledger });
    await deposit(submitter, { channelId: bystander, asset: NATIVE_ASSET, amount: parseEther('50') });
    await deposit(submitter, { channelId: bystander, asset: token.address, amount: 1n << 200n });

    await fc.assert(
      fc.asyncProperty(world, async (w) => {
        await token.setMode(TokenMode.Honest);
        const [A, G, B] = [Signer.random(), Signer.random(), Signer.random()];
        const make = (x: Signer, y: Signer, kind: ChannelKind, challengeDuration: bigint): Params => ({
          chainId: d.deployer.chainId,
          adjudicator: d.deployer.adjudicator,
          participants: [x.address, y.address],
          challengeDuration,
          nonce: nonce++,
          kind,
        });
        const ag = make(A, G, ChannelKind.Ledger, w.durations[0]);
        const gb = make(G, B, ChannelKind.Ledger, w.durations[1]);
        const vc = make(A, B, ChannelKind.Virtual, w.durations[2]);
        const stream = make(A, B, ChannelKind.Stream, w.durations[3]);
        const ledgers = [ag, gb];
        const signersOf = new Map<Bytes32, [Signer, Signer]>([[idOf(ag), [A, G]], [idOf(gb), [G, B]], [idOf(vc), [A, B]]]);
        const ids: Bytes32[] = [idOf(ag), idOf(gb), bystander, idOf(vc), idOf(stream)];
        const subs = [vc, stream];
        if (w.receivers[0] !== null) await placeReceiver(d, A.address, w.receivers[0]);
        if (w.receivers[1] !== null) await placeReceiver(d, G.address, w.receivers[1]);
        const payee = await impersonate(d, B.address);
        const accounts: Address[] = [A.address, G.address, B.address, submitter.account, token.address];
        let mode: TokenMode = TokenMode.Honest;
        /** Outcomes by hash, for conclude and release, from every registration that succeeded. */
        const outcomes = new Map<string, Allocation>();
        /** A concluded ledger channel's outcome (what its Settled amounts refer to). */
        const concluded = new Map<Bytes32, Allocation>();

        const toAllocation = (o: RawOutcome): Allocation => ({
          assets: o.assets.map((i) => assets[i]!),
          balances: o.balances,
          locked: o.locked.map((l): SubAlloc => ({ id: idOf(subs[l.sub]!), balances: l.balances, indexMap: l.indexMap })),
        });

        const registerState = async (p: Params, state: State, forged = false): Promise<boolean> => {
          const [x, y] = signersOf.get(idOf(p))!;
          const signed = signState(p, state, forged ? [x, Signer.random()] : [x, y]);
          const ok = await attempt(() => register(submitter, { params: p, signed }));
          if (ok) {
            outcomes.set(outcomeHash(state.outcome), state.outcome);
            if (state.isFinal && p.kind === ChannelKind.Ledger) concluded.set(idOf(p), state.outcome);
          }
          return ok;
        };

        /** What the contract still owes per asset, against what it holds. */
        const checkSolvent = async (): Promise<void> => {
          for (const asset of [NATIVE_ASSET, token.address]) {
            let owed = 0n;
            for (const id of ids) {
              const h = await readHoldings(submitter, id, asset);
              if (!h.concluded) owed += h.amount;
            }
            for (const [id, o] of concluded) {
              const i = o.assets.indexOf(asset);
              const settled = await readSettled(submitter, id);
              if (i >= 0 && settled) owed += settled.held[i]!;
            }
            for (const acct of accounts) owed += await readCredit(submitter, acct, asset);
            const held = asset === NATIVE_ASSET ? await ethBalance(d, d.deployer.adjudicator) : await token.balanceOf(d.deployer.adjudicator);
            expect(held, `solvency in ${asset}`).toBeGreaterThanOrEqual(owed);
          }
        };

        /** Ledger channels concluded by someone else's transaction (a re-entering token). */
        const noteConclusions = async (): Promise<void> => {
          for (const p of ledgers) {
            if (concluded.has(idOf(p))) continue;
            if ((await readHoldings(submitter, idOf(p), NATIVE_ASSET)).concluded) concluded.set(idOf(p), reentryClose.state.outcome);
          }
        };

        // A re-entering token tries to close G–B in the middle of whatever moves the token.
        const reentryClose = signState(gb, { channelId: idOf(gb), version: 1n, outcome: { assets: [NATIVE_ASSET], balances: [[1n, 1n]], locked: [] }, isFinal: true }, [G, B]);
        await token.setReentry(d.deployer.adjudicator, registerCalldata(submitter, gb, reentryClose));

        /**
         * A call that hands all its gas to a gas-burning token (a pull, a withdrawal) cannot
         * be estimated (the node would search up to the block limit, each try burning it
         * all): sent with a fixed budget, it must fail and change nothing (checked by the
         * solvency check after it).
         */
        const burnsAll = async (client: ChainClient, functionName: 'deposit' | 'depositMany' | 'withdraw', args: readonly unknown[]): Promise<false> => {
          const hash = await client.walletClient.writeContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName, args, gas: 500_000n } as never);
          expect((await client.publicClient.waitForTransactionReceipt({ hash })).status).toBe('reverted');
          return false;
        };

        /** Runs one action; true if its call went through. */
        const run = async (a: Action): Promise<boolean> => {
          const burning = (asset: number): boolean => mode === TokenMode.BurnGas && asset === 1;
          const amountIn = (asset: number, amount: bigint): bigint => (asset === 0 ? amount % parseEther('10') : amount);
          switch (a.t) {
            case 'deposit': {
              const args = { channelId: ids[a.ch]!, asset: assets[a.asset]!, amount: amountIn(a.asset, a.amount) };
              if (burning(a.asset) && args.amount > 0n) return burnsAll(submitter, 'deposit', [args.channelId, args.asset, args.amount]);
              return attempt(() => deposit(submitter, args));
            }
            case 'depositMany': {
              const entries = a.entries.map((e) => ({ channelId: ids[e.ch]!, amount: amountIn(a.asset, e.amount) }));
              if (burning(a.asset) && entries.some((e) => e.amount > 0n)) return burnsAll(submitter, 'depositMany', [entries.map((e) => e.channelId), assets[a.asset]!, entries.map((e) => e.amount)]);
              return attempt(() => depositMany(submitter, { asset: assets[a.asset]!, deposits: entries }));
            }
            case 'register': {
              const p = a.ch === 3 ? vc : ledgers[a.ch]!;
              return registerState(p, { channelId: idOf(p), version: a.version, outcome: toAllocation(a.outcome), isFinal: a.isFinal }, a.forged);
            }
            case 'voucher': {
              const signature = signVoucher(stream, a.cumulative, a.forged ? B : A);
              return attempt(() => registerVoucher(a.byPayee ? payee : submitter, { params: stream, cumulative: a.cumulative, signature }));
            }
            case 'conclude': {
              const p = ledgers[a.ch]!;
              const registered = await readDispute(submitter, idOf(p));
              const o = registered && outcomes.get(registered.outcome);
              if (!o || !(await attempt(() => conclude(submitter, { params: p, outcome: o })))) return false;
              concluded.set(idOf(p), o);
              return true;
            }
            case 'release': {
              const parent = ledgers[a.parent]!;
              const parentOutcome = concluded.get(idOf(parent));
              const sub = subs[a.sub]!;
              const registered = await readDispute(submitter, idOf(sub));
              if (!parentOutcome || !registered) return false;
              const virtualOutcome = sub.kind === ChannelKind.Virtual ? outcomes.get(registered.outcome) : undefined;
              return attempt(() => concludeVirtual(submitter, { parent, parentOutcome, virtual: sub, virtualOutcome }));
            }
            case 'time':
              await d.increaseTime(a.seconds);
              return true;
            case 'tokenMode':
              mode = a.mode;
              await token.setMode(a.mode);
              return true;
            case 'block':
              await token.setBlocked(accounts[a.who]!, a.blocked);
              return true;
            case 'withdraw':
              // With nothing credited it reverts before touching the token: estimated as usual.
              if (burning(a.asset) && (await readCredit(payee, payee.account, assets[a.asset]!)) > 0n) return burnsAll(payee, 'withdraw', [assets[a.asset]!, accounts[a.to]!]);
              return attempt(() => withdraw(payee, assets[a.asset]!, accounts[a.to]!));
          }
        };

        for (const a of w.actions) {
          if (await run(a)) succeeded.set(a.t, (succeeded.get(a.t) ?? 0) + 1);
          await noteConclusions();
          await checkSolvent();
        }

        // ---- afterwards: everything can still be closed, resolved and released
        await token.setMode(TokenMode.Honest);
        const [lockEth, lockToken] = w.locks;
        const leaf = (sub: Params): SubAlloc => ({ id: idOf(sub), balances: [lockEth, lockToken], indexMap: [0, 1] });
        const parentFinal: Allocation = { assets: [NATIVE_ASSET, token.address], balances: [[5n, 5n], [5n, 5n]], locked: [leaf(vc), leaf(stream)] };
        const closedNow: Params[] = [];
        for (const p of ledgers) {
          if (concluded.has(idOf(p))) continue;
          // Top up to what the final state needs (earlier deposits may hold that already, up to 2^255).
          for (const [i, asset] of [NATIVE_ASSET, token.address].entries()) {
            const need = 10n + 2n * w.locks[i]!;
            const held = (await readHoldings(submitter, idOf(p), asset)).amount;
            if (held < need) await deposit(submitter, { channelId: idOf(p), asset, amount: need - held });
          }
        }
        await token.setMode(w.finalMode);
        const gatewayBefore = [await ethBalance(d, G.address), await token.balanceOf(G.address)];
        const creditsBefore = [await readCredit(submitter, G.address, NATIVE_ASSET), await readCredit(submitter, G.address, token.address)];
        for (const p of ledgers) {
          // (A re-entering token may have closed G–B from inside A–G's payout.)
          await noteConclusions();
          if (concluded.has(idOf(p))) continue;
          expect(await registerState(p, { channelId: idOf(p), version: 1n, outcome: parentFinal, isFinal: true }), 'a final state both signed closes the channel').toBe(true);
          closedNow.push(p);
        }
        // Resolve both virtual channels, whatever was registered for them before.
        const vcFinal: Allocation = { assets: [NATIVE_ASSET, token.address], balances: [[w.resolution[0], w.resolution[1]], [w.resolution[1], w.resolution[0]]], locked: [] };
        if (!(await readDispute(submitter, idOf(vc)))) await registerState(vc, { channelId: idOf(vc), version: 1n, outcome: vcFinal, isFinal: true });
        if (!(await readDispute(submitter, idOf(stream)))) await registerVoucher(submitter, { params: stream, cumulative: w.resolution[0], signature: signVoucher(stream, w.resolution[0], A) });
        await d.increaseTime(MAX_CHALLENGE_DURATION + 1n);
        const vcRegistered = (await readDispute(submitter, idOf(vc)))!;
        for (const parent of closedNow) {
          for (const sub of subs) {
            const virtualOutcome = sub.kind === ChannelKind.Virtual ? outcomes.get(vcRegistered.outcome) : undefined;
            await concludeVirtual(submitter, { parent, parentOutcome: parentFinal, virtual: sub, virtualOutcome });
          }
        }
        await checkSolvent();
        // Both parents closed here lock the same amounts: the gateway gets back exactly what
        // it locked (in A–G it is participant 1, the payee's side; in G–B participant 0).
        if (closedNow.length === 2) {
          const got = [
            (await ethBalance(d, G.address)) - gatewayBefore[0]! + (await readCredit(submitter, G.address, NATIVE_ASSET)) - creditsBefore[0]!,
            (await token.balanceOf(G.address)) - gatewayBefore[1]! + (await readCredit(submitter, G.address, token.address)) - creditsBefore[1]!,
          ];
          // Free balances: 5 + 5 per asset across the two closes; locks: one T per asset per sub.
          const expected = [10n + 2n * lockEth, 10n + 2n * lockToken];
          expect(got[0], 'gateway neutrality in ETH').toBe(expected[0]);
          // A fee-on-transfer token delivers less than it was sent: its own doing.
          if (w.finalMode !== TokenMode.FeeOnTransfer) expect(got[1], 'gateway neutrality in the token').toBe(expected[1]);
        }
      }),
      // A failure is reported as found: shrinking call sequences on a chain outlasts any time budget.
      { endOnFailure: true, numRuns: RUNS, seed: process.env.PICOPAY_FUZZ_SEED ? Number(process.env.PICOPAY_FUZZ_SEED) : undefined },
    );
    if (process.env.PICOPAY_FUZZ_REPORT) console.log('calls that went through:', Object.fromEntries(succeeded));
  });
});
