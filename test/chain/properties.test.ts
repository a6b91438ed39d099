// Properties, fuzzed with fast-check-driven call sequences on anvil. Channel participants
// are fresh keys that never send a transaction, so their balance is exactly what the
// adjudicator paid them; a funded anvil account submits everything.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { writeAdjudicator } from '../../src/chain/client.ts';
import { conclude } from '../../src/chain/conclude.ts';
import { concludeVirtual } from '../../src/chain/concludeVirtual.ts';
import { deployAdjudicator } from '../../src/chain/deploy.ts';
import { deposit } from '../../src/chain/deposit.ts';
import { toContractParams, toContractSignatures, toContractState, type ContractSignature } from '../../src/chain/encode.ts';
import { AdjudicatorRevertError } from '../../src/chain/errors.ts';
import { readDispute, readHoldings } from '../../src/chain/read.ts';
import { register } from '../../src/chain/register.ts';
import { registerVoucher } from '../../src/chain/registerVirtual.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { domainSeparator, outcomeHash, voucherDigest } from '../../src/model/hash.ts';
import { ChannelKind, NATIVE_ASSET, type Address, type Allocation, type Params, type SubAlloc } from '../../src/model/types.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { ethBalance, ethOutcome, idOf, makeState, signState, subAlloc, useDevnet } from '../../src/testing/chain.ts';

const devnet = useDevnet({ accounts: 3 });
const DURATION = MIN_CHALLENGE_DURATION;
let nonce = 1_000_000n;

function params(d: Devnet, a: Signer, b: Signer, kind: ChannelKind = ChannelKind.Ledger): Params {
  return { chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator, participants: [a.address, b.address], challengeDuration: DURATION, nonce: nonce++, kind };
}

function signers(p: Params, all: readonly Signer[]): [Signer, Signer] {
  const find = (addr: Address) => all.find((s) => s.address === addr)!;
  return [find(p.participants[0]), find(p.participants[1])];
}

/** Runs a call; a contract revert is an expected outcome of fuzzing, anything else is not. */
async function attempt(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    return true;
  } catch (err) {
    if (err instanceof AdjudicatorRevertError) return false;
    throw err;
  }
}

async function received(d: Devnet, who: readonly Signer[]): Promise<bigint> {
  let sum = 0n;
  for (const s of who) sum += await ethBalance(d, s.address);
  return sum;
}

const amount = fc.bigInt({ min: 0n, max: 1000n });
const indexMap = fc.constantFrom([0, 1] as const, [1, 0] as const, [0, 0] as const, [1, 1] as const);

describe('no channel pays out more than was deposited into it', () => {
  const action = fc.oneof(
    fc.record({ t: fc.constant('deposit' as const), ch: fc.nat(1), amount }),
    fc.record({
      t: fc.constant('register' as const),
      ch: fc.nat(1),
      version: fc.bigInt({ min: 1n, max: 6n }),
      balances: fc.tuple(amount, amount),
      locked: fc.array(fc.record({ vc: fc.nat(1), amount, indexMap }), { maxLength: 2 }),
      isFinal: fc.boolean(),
    }),
    fc.record({ t: fc.constant('conclude' as const), ch: fc.nat(1) }),
    fc.record({ t: fc.constant('time' as const), seconds: fc.integer({ min: 1, max: (3 * Number(DURATION)) / 2 }) }),
    fc.record({ t: fc.constant('vcRegister' as const), vc: fc.nat(1), x: amount, y: amount, isFinal: fc.boolean() }),
    fc.record({ t: fc.constant('release' as const), vc: fc.nat(1), ch: fc.nat(1) }),
  );

  it('for random call sequences over two ledger channels and two virtual channels', async () => {
    const d = devnet();
    const submitter = d.clients[1]!;
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 25 }), fc.tuple(amount, amount), async (randomActions, [x, y]) => {
        // After the random calls, settle everything that can settle, so releases are exercised.
        const settle = [
          { t: 'time' as const, seconds: 2 * Number(DURATION) },
          ...[0, 1].map((ch) => ({ t: 'conclude' as const, ch })),
          ...[0, 1].map((vc) => ({ t: 'vcRegister' as const, vc, x, y, isFinal: true })),
          { t: 'time' as const, seconds: 2 * Number(DURATION) },
          ...[0, 1].flatMap((ch) => [0, 1].map((vc) => ({ t: 'release' as const, vc, ch }))),
        ];
        const actions = [...randomActions, ...settle];
        const people = [Signer.random(), Signer.random(), Signer.random()];
        const [p0, p1, p2] = people as [Signer, Signer, Signer];
        const ledgers = [params(d, p0, p1), params(d, p1, p2)];
        const vcs = [params(d, p0, p2, ChannelKind.Stream), params(d, p0, p2, ChannelKind.Virtual)];
        const deposited = [0n, 0n];
        const paidOut = [0n, 0n];
        const registeredOutcome = new Map<string, Allocation>();
        const concludedOutcome = new Map<string, Allocation>();
        const poolBefore = await ethBalance(d, d.deployer.adjudicator);

        const payoutBy = async (ch: number, call: () => Promise<unknown>): Promise<boolean> => {
          const before = await received(d, people);
          const ok = await attempt(call);
          paidOut[ch]! += (await received(d, people)) - before;
          return ok;
        };

        for (const a of actions) {
          if (a.t === 'deposit') {
            const ok = await attempt(() => deposit(submitter, { channelId: idOf(ledgers[a.ch]!), asset: NATIVE_ASSET, amount: a.amount }));
            if (ok) deposited[a.ch]! += a.amount;
          } else if (a.t === 'register') {
            const p = ledgers[a.ch]!;
            const locked: SubAlloc[] = [];
            for (const l of a.locked) if (!locked.some((s) => s.id === idOf(vcs[l.vc]!))) locked.push(subAlloc(vcs[l.vc]!, [l.amount], l.indexMap));
            const outcome = ethOutcome(a.balances[0], a.balances[1], locked);
            const signed = signState(p, makeState(p, a.version, outcome, a.isFinal), signers(p, people));
            const ok = await payoutBy(a.ch, () => register(submitter, { params: p, signed }));
            if (ok) (a.isFinal ? concludedOutcome : registeredOutcome).set(idOf(p), outcome);
          } else if (a.t === 'conclude') {
            const p = ledgers[a.ch]!;
            const outcome = registeredOutcome.get(idOf(p));
            if (!outcome) continue;
            if (await payoutBy(a.ch, () => conclude(submitter, { params: p, outcome }))) concludedOutcome.set(idOf(p), outcome);
          } else if (a.t === 'time') {
            await d.increaseTime(a.seconds);
          } else if (a.t === 'vcRegister') {
            const vc = vcs[a.vc]!;
            await attempt(async () => {
              if (vc.kind === ChannelKind.Stream) {
                return registerVoucher(submitter, { params: vc, cumulative: a.y, signature: p0.sign(voucherDigestFor(vc, a.y)) });
              }
              return register(submitter, { params: vc, signed: signState(vc, makeState(vc, 1n, ethOutcome(a.x, a.y), a.isFinal), [p0, p2]) });
            });
          } else if (a.t === 'release') {
            const parent = ledgers[a.ch]!;
            const parentOutcome = concludedOutcome.get(idOf(parent));
            const vc = vcs[a.vc]!;
            if (!parentOutcome?.locked.some((s) => s.id === idOf(vc))) continue;
            const registered = await readDispute(submitter, idOf(vc));
            if (!registered) continue;
            const virtualOutcome = vc.kind === ChannelKind.Virtual ? vcOutcomeFor(registered.outcome, actions, a.vc) : undefined;
            if (vc.kind === ChannelKind.Virtual && !virtualOutcome) continue;
            await payoutBy(a.ch, () => concludeVirtual(submitter, { parent, parentOutcome, virtual: vc, virtualOutcome }));
          }
          for (const ch of [0, 1]) expect(paidOut[ch]!).toBeLessThanOrEqual(deposited[ch]!);
        }
        const total = deposited[0]! + deposited[1]! - paidOut[0]! - paidOut[1]!;
        expect(await ethBalance(d, d.deployer.adjudicator)).toBe(poolBefore + total);
      }),
      { numRuns: 40 },
    );
  });
});

function voucherDigestFor(vc: Params, cumulative: bigint): Uint8Array {
  return voucherDigest(domainSeparator({ chainId: vc.chainId, adjudicator: vc.adjudicator }), idOf(vc), cumulative);
}
/** The virtual outcome among the generated ones whose hash was registered. */
function vcOutcomeFor(hash: string, actions: readonly { t: string; vc?: number; x?: bigint; y?: bigint }[], vc: number): Allocation | undefined {
  for (const a of actions) {
    if (a.t !== 'vcRegister' || a.vc !== vc) continue;
    const o = ethOutcome(a.x!, a.y!);
    if (outcomeHash(o) === hash) return o;
  }
  return undefined;
}

describe('an honest party that submits its latest fully signed state in time gets at least its balance in it', () => {
  const scenario = fc.record({
    deposits: fc.tuple(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: 1000n })),
    splits: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 6 }),
    latestIsFinal: fc.boolean(),
    honest: fc.constantFrom(0, 1),
    // The cheater's submissions (indices into the history) before and after the honest one.
    cheatsBefore: fc.array(fc.nat(5), { maxLength: 3 }),
    cheatsAfter: fc.array(fc.nat(5), { maxLength: 2 }),
    honestDelay: fc.integer({ min: 0, max: Number(DURATION) - 20 }),
  });

  it('whatever older states the other party registers or refutes with', async () => {
    const d = devnet();
    const submitter = d.clients[1]!;
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        const people = [Signer.random(), Signer.random()] as const;
        const p = params(d, people[0], people[1]);
        const total = sc.deposits[0] + sc.deposits[1];
        for (const amountIn of sc.deposits) await deposit(submitter, { channelId: idOf(p), asset: NATIVE_ASSET, amount: amountIn });
        const history = sc.splits.map((f, i) => {
          const b0 = (total * BigInt(Math.round(f * 1000))) / 1000n;
          const isFinal = i === sc.splits.length - 1 && sc.latestIsFinal;
          return signState(p, makeState(p, BigInt(i + 1), ethOutcome(b0, total - b0), isFinal), people);
        });
        const latest = history.at(-1)!;
        const cheat = async (i: number): Promise<void> => {
          await attempt(() => register(submitter, { params: p, signed: history[i % history.length]! }));
        };
        const honestAddress = people[sc.honest].address;
        const before = await ethBalance(d, honestAddress);

        for (const i of sc.cheatsBefore) await cheat(i);
        await d.increaseTime(sc.honestDelay);
        // The honest party: a final state closes at once, even during a dispute; otherwise it
        // registers or refutes with its latest state, unless that is what is registered.
        if (!(await readHoldings(submitter, idOf(p), NATIVE_ASSET)).concluded) {
          const registered = await readDispute(submitter, idOf(p));
          if (latest.state.isFinal || !registered || registered.version < latest.state.version) await register(submitter, { params: p, signed: latest });
        }
        for (const i of sc.cheatsAfter) await cheat(i);
        await d.increaseTime(DURATION);
        if (!latest.state.isFinal) await conclude(submitter, { params: p, outcome: latest.state.outcome });

        const owed = latest.state.outcome.balances[0]![sc.honest]!;
        expect((await ethBalance(d, honestAddress)) - before).toBeGreaterThanOrEqual(owed);
      }),
      { numRuns: 30 },
    );
  });
});

describe('gateway neutrality', () => {
  const scenario = fc.record({
    kind: fc.constantFrom(ChannelKind.Virtual, ChannelKind.Stream),
    fromA: fc.bigInt({ min: 0n, max: 1000n }),
    fromB: fc.bigInt({ min: 0n, max: 1000n }),
    // Whatever A and B sign: any balances, even above the locked total, or any voucher.
    signed: fc.tuple(fc.bigInt({ min: 0n, max: 3000n }), fc.bigInt({ min: 0n, max: 3000n })),
    gatewayFirstInAG: fc.boolean(),
    gatewayFirstInGB: fc.boolean(),
    releaseAGFirst: fc.boolean(),
  });

  it('the gateway gets back exactly what it locked across both parents, for any A/B-signed outcome', async () => {
    const d = devnet();
    const submitter = d.clients[1]!;
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        const [A, G, B] = [Signer.random(), Signer.random(), Signer.random()];
        const total = sc.fromA + sc.fromB;
        const vc = params(d, A, B, sc.kind);
        // In A–G, A puts in fromA and G mirrors B's fromB; in G–B, G mirrors fromA and B puts in fromB.
        const ag = sc.gatewayFirstInAG ? params(d, G, A) : params(d, A, G);
        const gb = sc.gatewayFirstInGB ? params(d, G, B) : params(d, B, G);
        const indexOf = (p: Params, s: Signer): number => p.participants.indexOf(s.address);
        const parents = [
          { p: ag, sub: subAlloc(vc, [total], [indexOf(ag, A), indexOf(ag, G)]) },
          { p: gb, sub: subAlloc(vc, [total], [indexOf(gb, G), indexOf(gb, B)]) },
        ];
        const outcomes: Allocation[] = [];
        for (const { p, sub } of parents) {
          await deposit(submitter, { channelId: idOf(p), asset: NATIVE_ASSET, amount: total + 10n });
          const outcome = ethOutcome(5n, 5n, [sub]);
          await register(submitter, { params: p, signed: signState(p, makeState(p, 1n, outcome, true), signers(p, [A, G, B])) });
          outcomes.push(outcome);
        }
        const [x, y] = sc.signed;
        const virtualOutcome = sc.kind === ChannelKind.Virtual ? ethOutcome(x, y) : undefined;
        if (virtualOutcome) await register(submitter, { params: vc, signed: signState(vc, makeState(vc, 1n, virtualOutcome, true), [A, B]) });
        else await registerVoucher(submitter, { params: vc, cumulative: y, signature: A.sign(voucherDigestFor(vc, y)) });
        await d.increaseTime(DURATION);

        const gatewayBefore = await ethBalance(d, G.address);
        const order = sc.releaseAGFirst ? [0, 1] : [1, 0];
        for (const i of order) await concludeVirtual(submitter, { parent: parents[i]!.p, parentOutcome: outcomes[i]!, virtual: vc, virtualOutcome });
        expect((await ethBalance(d, G.address)) - gatewayBefore).toBe(total);
      }),
      { numRuns: 30 },
    );
  });
});


describe('replay protection', () => {
  const CURVE_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const scenario = fc.record({
    otherChainId: fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }).filter((c) => c !== 31337n),
    balances: fc.tuple(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: 1000n })),
    version: fc.bigInt({ min: 1n, max: 1000n }),
    isFinal: fc.boolean(),
    cumulative: fc.bigInt({ min: 1n, max: 1000n }),
  });

  it('rejects states and vouchers signed for another chain id or another deployment', async () => {
    const d = devnet();
    const submitter = d.clients[1]!;
    const other = await deployAdjudicator({ rpcUrl: d.anvil.rpcUrl, chainId: d.anvil.chainId, privateKey: d.anvil.accounts[2]!.privateKey, pollingInterval: 20 });
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        const [a, b] = [Signer.random(), Signer.random()];
        const here = params(d, a, b);
        const elsewhere: Params[] = [{ ...here, chainId: sc.otherChainId }, { ...here, adjudicator: other.adjudicator }];
        const outcome = ethOutcome(sc.balances[0], sc.balances[1]);
        for (const signedFor of elsewhere) {
          // Submitted here with the same participants, nonce and duration.
          const state = makeState(signedFor, sc.version, outcome, sc.isFinal);
          const signed = signState(signedFor, state, [a, b]);
          await expectRevert(writeAdjudicator(submitter, 'register', [toContractParams(here, submitter), toContractState(state), toContractSignatures(signed)]), 'InvalidSignature');
          const stream = { ...here, kind: ChannelKind.Stream };
          const voucher = a.sign(voucherDigestFor({ ...stream, chainId: signedFor.chainId, adjudicator: signedFor.adjudicator }, sc.cumulative));
          await expectRevert(registerVoucher(submitter, { params: stream, cumulative: sc.cumulative, signature: voucher }), 'InvalidSignature');
        }
        // The same signers' signatures for this chain and deployment are accepted.
        await register(submitter, { params: here, signed: signState(here, makeState(here, sc.version, outcome, sc.isFinal), [a, b]) });
      }),
      { numRuns: 20 },
    );
  });

  it('rejects the malleable twin of a valid signature and v outside {27, 28}', async () => {
    const d = devnet();
    const submitter = d.clients[1]!;
    const [a, b] = [Signer.random(), Signer.random()];
    const p = params(d, a, b);
    const signed = signState(p, makeState(p, 1n, ethOutcome(1n, 2n)), [a, b]);
    const [sigA, sigB] = toContractSignatures(signed);
    const send = (sigs: readonly [ContractSignature, ContractSignature]) => writeAdjudicator(submitter, 'register', [toContractParams(p, submitter), toContractState(signed.state), sigs]);
    const twin: ContractSignature = { r: sigA.r, s: `0x${(CURVE_ORDER - BigInt(sigA.s)).toString(16).padStart(64, '0')}`, v: sigA.v === 27 ? 28 : 27 };
    await expectRevert(send([twin, sigB]), 'InvalidSignature');
    await expectRevert(send([{ ...sigA, v: sigA.v + 2 }, sigB]), 'InvalidSignature');
    await expectRevert(send([sigA, { ...sigB, v: 0 }]), 'InvalidSignature');
    await send([sigA, sigB]);
  });
});

async function expectRevert(promise: Promise<unknown>, name: string): Promise<void> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AdjudicatorRevertError);
  expect((err as AdjudicatorRevertError).errorName).toBe(name);
}
