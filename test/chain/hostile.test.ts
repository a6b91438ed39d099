// Attacks on the adjudicator, each as an example: durations that would overflow or end a
// dispute at once, outcomes shaped to make a release revert, assets left unfunded at the
// close, batch deposits one channel could make fail, hostile tokens and receivers.
// (Front-running is in frontrun.test.ts, arbitrary call sequences in fuzz.test.ts.)
import { parseEther } from 'viem';
import { describe, expect, it } from 'vitest';
import { createChainClient, writeAdjudicator } from '../../src/chain/client.ts';
import { conclude } from '../../src/chain/conclude.ts';
import { concludeVirtual } from '../../src/chain/concludeVirtual.ts';
import { cooperativeClose } from '../../src/chain/cooperativeClose.ts';
import { deposit, depositMany } from '../../src/chain/deposit.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { toContractParams, toContractSignatures, toContractState, type ContractOutcome } from '../../src/chain/encode.ts';
import { startDevnet } from '../../src/chain/devnet.ts';
import { adjudicatorAbi } from '../../src/chain/abi.generated.ts';
import { createTestClient, http } from 'viem';
import { AdjudicatorRevertError } from '../../src/chain/errors.ts';
import { readDispute, readHoldings } from '../../src/chain/read.ts';
import { register } from '../../src/chain/register.ts';
import { registerVoucher } from '../../src/chain/registerVirtual.ts';
import { readCredit } from '../../src/chain/withdraw.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { MAX_CHALLENGE_DURATION, MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { domainSeparator, stateDigest, toHex } from '../../src/model/hash.ts';
import { lockedRoot } from '../../src/model/locked.ts';
import { ChannelKind, NATIVE_ASSET, type Address, type Allocation, type Params, type SignedState, type State } from '../../src/model/types.ts';
import { ethBalance, ethOutcome, idOf, makeState, signState, signVoucher, subAlloc, useDevnet } from '../../src/testing/chain.ts';
import { fundedToken, placeReceiver, ReceiverMode, registerCalldata, TokenMode } from './hostile.ts';

const devnet = useDevnet();
const ONE = parseEther('1');
const UINT64_MAX = (1n << 64n) - 1n;
let nonce = 5_000_000n;

function channel(d: Devnet, a: Signer, b: Signer, kind: ChannelKind = ChannelKind.Ledger, challengeDuration = MIN_CHALLENGE_DURATION): Params {
  return { chainId: d.deployer.chainId, adjudicator: d.deployer.adjudicator, participants: [a.address, b.address], challengeDuration, nonce: nonce++, kind };
}

const sign = (p: Params, state: State, a: Signer, b: Signer): SignedState => signState(p, state, [a, b]);

async function rejects(promise: Promise<unknown>, name: string): Promise<void> {
  const err = await promise.then(() => null, (e: unknown) => e);
  expect(err, `expected revert ${name}`).toBeInstanceOf(AdjudicatorRevertError);
  expect((err as AdjudicatorRevertError).errorName).toBe(name);
}

/** A concluded channel takes `outcome` neither as a registration nor as a cooperative close. */
async function refusedAfterClose(d: Devnet, p: Params, outcome: Allocation, a: Signer, b: Signer): Promise<void> {
  await rejects(register(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 9n, outcome), a, b) }), 'ChannelConcluded');
  await rejects(cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 9n, outcome, true), a, b) }), 'ChannelConcluded');
}

/** Registers a raw outcome (any shape) signed by both, bypassing the model's own checks. */
function registerRaw(d: Devnet, p: Params, version: bigint, outcome: ContractOutcome, isFinal: boolean, a: Signer, b: Signer) {
  // The digest hashes the contract outcome exactly as given.
  const state = { channelId: idOf(p), version, outcome: { assets: outcome.assets, balances: outcome.balances, locked: [] }, isFinal } as State;
  const signed = sign(p, state, a, b);
  return writeAdjudicator(d.clients[1]!, 'register', [toContractParams(p, d.clients[1]!), { version, outcome, isFinal }, toContractSignatures(signed)]);
}

async function now(d: Devnet): Promise<bigint> {
  return (await d.deployer.publicClient.getBlock()).timestamp;
}

describe('challenge durations are clamped into the contract bounds', () => {
  it('2^64 - 1, 2^62, 0 and 1 second: every registration gets a timeout between one hour and four weeks', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    for (const [duration, period] of [[UINT64_MAX, MAX_CHALLENGE_DURATION], [1n << 62n, MAX_CHALLENGE_DURATION], [0n, MIN_CHALLENGE_DURATION], [1n, MIN_CHALLENGE_DURATION]] as const) {
      const p = channel(d, a, b, ChannelKind.Ledger, duration);
      await register(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 1n, ethOutcome(1n, 1n)), a, b) });
      const registered = (await readDispute(d.clients[1]!, idOf(p)))!;
      expect(registered.timeout - (await now(d))).toBe(period);
    }
  });

  it('a channel with a 2^64 - 1 duration still closes cooperatively, and its virtual and stream channels register', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const p = channel(d, a, b, ChannelKind.Ledger, UINT64_MAX);
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: 10n });
    await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 2n, ethOutcome(4n, 6n), true), a, b) });
    expect(await ethBalance(d, b.address)).toBe(6n);
    const vc = channel(d, a, b, ChannelKind.Virtual, UINT64_MAX);
    await register(d.clients[1]!, { params: vc, signed: sign(vc, makeState(vc, 1n, ethOutcome(1n, 1n)), a, b) });
    const stream = channel(d, a, b, ChannelKind.Stream, UINT64_MAX);
    await registerVoucher(d.clients[1]!, { params: stream, cumulative: 0n, signature: null });
    expect((await readDispute(d.clients[1]!, idOf(stream)))!.timeout - (await now(d))).toBe(MAX_CHALLENGE_DURATION);
  });

  it('a stream with a zero duration: the payer\'s zero voucher does not resolve at once, the payee\'s real one lands', async () => {
    const d = devnet();
    const [payer, payee] = [Signer.random(), Signer.random()];
    const stream = channel(d, payer, payee, ChannelKind.Stream, 0n);
    await registerVoucher(d.clients[1]!, { params: stream, cumulative: 0n, signature: null });
    await d.increaseTime(MIN_CHALLENGE_DURATION - 10n);
    await registerVoucher(d.clients[2]!, { params: stream, cumulative: 500n, signature: signVoucher(stream, 500n, payer) });
    expect(BigInt((await readDispute(d.clients[1]!, idOf(stream)))!.outcome)).toBe(500n);
  });
});

describe('outcomes are validated where they enter', () => {
  const bad = (token: Address): [string, ContractOutcome][] => [
    ['no balance rows', { assets: [NATIVE_ASSET], balances: [], lockedRoot: lockedRoot([]) }],
    ['fewer rows than assets', { assets: [NATIVE_ASSET, token], balances: [[1n, 1n]], lockedRoot: lockedRoot([]) }],
    ['more rows than assets', { assets: [NATIVE_ASSET], balances: [[1n, 1n], [2n, 2n]], lockedRoot: lockedRoot([]) }],
    ['no assets', { assets: [], balances: [], lockedRoot: lockedRoot([]) }],
    ['a repeated asset', { assets: [NATIVE_ASSET, token, NATIVE_ASSET], balances: [[1n, 0n], [0n, 0n], [1n, 0n]], lockedRoot: lockedRoot([]) }],
    ['nine assets', { assets: Array.from({ length: 9 }, (_, i) => `0x${(i + 1).toString(16).padStart(40, '0')}` as Address), balances: Array.from({ length: 9 }, () => [0n, 0n] as const), lockedRoot: lockedRoot([]) }],
  ];

  it('colluding A and B cannot register a malformed virtual outcome, so release into both parents always works', async () => {
    const d = devnet();
    const [A, G, B] = [Signer.random(), Signer.random(), Signer.random()];
    const vc = channel(d, A, B, ChannelKind.Virtual);
    const T = 100n;
    const ag = channel(d, A, G);
    const gb = channel(d, G, B);
    const parentOutcome = ethOutcome(5n, 5n, [subAlloc(vc, [T], [0, 1])]);
    for (const [p, x, y] of [[ag, A, G], [gb, G, B]] as const) {
      await deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: T + 10n });
      await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 1n, parentOutcome, true), x, y) });
    }
    for (const [what, outcome] of bad(d.token)) {
      for (const isFinal of [false, true]) {
        const err = await registerRaw(d, vc, 5n, outcome, isFinal, A, B).then(() => null, (e: unknown) => e);
        expect((err as AdjudicatorRevertError).errorName, what).toBe('InvalidOutcome');
      }
    }
    // Whatever well-formed outcome they sign (here: more than T to B), G gets back exactly T.
    const signedOutcome: Allocation = ethOutcome(0n, 3n * T);
    await register(d.clients[1]!, { params: vc, signed: sign(vc, makeState(vc, 9n, signedOutcome, true), A, B) });
    const before = await ethBalance(d, G.address);
    for (const parent of [ag, gb]) await concludeVirtual(d.clients[1]!, { parent, parentOutcome, virtual: vc, virtualOutcome: signedOutcome });
    expect((await ethBalance(d, G.address)) - before).toBe(T);
  });

  it('a ledger channel refuses malformed outcomes in a dispute and in a cooperative close', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const p = channel(d, a, b);
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: 10n });
    for (const [what, outcome] of bad(d.token)) {
      for (const isFinal of [false, true]) {
        const err = await registerRaw(d, p, 5n, outcome, isFinal, a, b).then(() => null, (e: unknown) => e);
        expect((err as AdjudicatorRevertError).errorName, what).toBe('InvalidOutcome');
      }
    }
    await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 6n, ethOutcome(3n, 7n), true), a, b) });
    expect(await ethBalance(d, b.address)).toBe(7n);
  });
});

describe('the largest outcome the contract accepts', () => {
  it('eight assets in the parents and in the virtual outcome: it registers, concludes and releases in both parents', async () => {
    const d = devnet();
    const [A, G, B] = [Signer.random(), Signer.random(), Signer.random()];
    const tokens = [];
    for (let i = 0; i < 7; i++) {
      const token = await fundedToken(d.clients[1]!, 1000n);
      tokens.push(token);
    }
    const assets: Address[] = [NATIVE_ASSET, ...tokens.map((t) => t.address)];
    const T = 100n;
    const vc = channel(d, A, B, ChannelKind.Virtual);
    const parentOutcome: Allocation = { assets, balances: assets.map(() => [5n, 5n] as const), locked: [subAlloc(vc, assets.map(() => T), [0, 1])] };
    const [ag, gb] = [channel(d, A, G), channel(d, G, B)];
    for (const p of [ag, gb]) for (const asset of assets) await deposit(d.clients[1]!, { channelId: idOf(p), asset, amount: T + 10n });
    // G–B by dispute (register, then conclude), A–G cooperatively.
    await register(d.clients[1]!, { params: gb, signed: sign(gb, makeState(gb, 1n, parentOutcome), G, B) });
    await cooperativeClose(d.clients[1]!, { params: ag, signed: sign(ag, makeState(ag, 1n, parentOutcome, true), A, G) });
    // The virtual outcome lists the assets in reverse: every pair is compared once per release.
    const reversed = [...assets].reverse();
    const vcOutcome: Allocation = { assets: reversed, balances: reversed.map((_, i) => [T - BigInt(i), BigInt(i)] as const), locked: [] };
    await register(d.clients[1]!, { params: vc, signed: sign(vc, makeState(vc, 2n, vcOutcome, true), A, B) });
    await d.increaseTime(MIN_CHALLENGE_DURATION);
    await conclude(d.clients[1]!, { params: gb, outcome: parentOutcome });
    const gasUsed: bigint[] = [];
    for (const parent of [ag, gb]) gasUsed.push((await concludeVirtual(d.clients[1]!, { parent, parentOutcome, virtual: vc, virtualOutcome: vcOutcome })).gasUsed);
    expect(Math.max(...gasUsed.map(Number))).toBeLessThan(1_000_000);
    // G got back exactly T of each asset; B got its share of each, matched by address.
    for (const [i, token] of tokens.entries()) {
      expect(await token.balanceOf(G.address)).toBe(10n + T);
      expect(await token.balanceOf(B.address)).toBe(5n + BigInt(6 - i));
    }
    expect(await ethBalance(d, G.address)).toBe(10n + T);
  });
});

describe('a concluded channel is closed in every asset it lists', () => {
  it('an asset never funded takes no late deposit, and an old state cannot conclude the channel again', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const token = await fundedToken(d.clients[1]!, 1000n);
    const p = channel(d, a, b);
    const outcome: Allocation = { assets: [NATIVE_ASSET, token.address], balances: [[5n, 5n], [0n, 0n]], locked: [] };
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: 10n });
    await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 3n, outcome, true), a, b) });
    expect(await readHoldings(d.clients[1]!, idOf(p), token.address)).toEqual({ amount: 0n, concluded: true });
    await rejects(deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: 100n }), 'DepositRefused');
    // An old state listing the token first (its slot was unfunded at the close) is refused too.
    await refusedAfterClose(d, p, { assets: [token.address, NATIVE_ASSET], balances: [[0n, 0n], [10n, 0n]], locked: [] }, a, b);
  });

  it('nor does a state that lists none of the assets the channel concluded with', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const [token, other] = [await fundedToken(d.clients[1]!, 1000n), await fundedToken(d.clients[1]!, 1000n)];
    // A token-only channel: its ETH slot is marked all the same, as the channel's flag.
    const p = channel(d, a, b);
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: 10n });
    await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 3n, { assets: [token.address], balances: [[5n, 5n]], locked: [] }, true), a, b) });
    expect(await readHoldings(d.clients[1]!, idOf(p), NATIVE_ASSET)).toEqual({ amount: 0n, concluded: true });
    await rejects(deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: 1n }), 'DepositRefused');
    for (const assets of [[NATIVE_ASSET], [other.address]]) await refusedAfterClose(d, p, { assets, balances: [[1n, 0n]], locked: [] }, a, b);
  });

  it('a state listing a concluded asset anywhere, not only first, is refused', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const [token, unused] = [await fundedToken(d.clients[1]!, 1000n), await fundedToken(d.clients[1]!, 1000n)];
    const p = channel(d, a, b);
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: 10n });
    await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 3n, { assets: [NATIVE_ASSET, token.address], balances: [[0n, 0n], [5n, 5n]], locked: [] }, true), a, b) });
    await refusedAfterClose(d, p, { assets: [unused.address, token.address], balances: [[0n, 0n], [10n, 0n]], locked: [] }, a, b);
  });

  it('a dispute registered before a cooperative close with other assets cannot conclude afterwards', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const token = await fundedToken(d.clients[1]!, 1000n);
    const p = channel(d, a, b);
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: 10n });
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: 10n });
    const registered: Allocation = { assets: [token.address], balances: [[0n, 10n]], locked: [] };
    await register(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 1n, registered), a, b) });
    await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 2n, ethOutcome(5n, 5n), true), a, b) });
    await d.increaseTime(MIN_CHALLENGE_DURATION);
    await rejects(conclude(d.clients[1]!, { params: p, outcome: registered }), 'ChannelConcluded');
  });

  it('depositMany skips a concluded channel and refunds it; the rest of the batch is funded', async () => {
    const d = devnet();
    const [a, b, g] = [Signer.random(), Signer.random(), Signer.random()];
    const closed = channel(d, a, g);
    await cooperativeClose(d.clients[1]!, { params: closed, signed: sign(closed, makeState(closed, 1n, ethOutcome(0n, 0n), true), a, g) });
    const open = [channel(d, b, g), channel(d, a, b)];
    const gateway = d.clients[3]!;
    const before = await ethBalance(d, gateway.account);
    const result = await depositMany(gateway, { asset: NATIVE_ASSET, deposits: [{ channelId: idOf(open[0]!), amount: ONE }, { channelId: idOf(closed), amount: 2n * ONE }, { channelId: idOf(open[1]!), amount: ONE }] });
    expect(result.skipped).toEqual([idOf(closed)]);
    for (const p of open) expect((await readHoldings(gateway, idOf(p), NATIVE_ASSET)).amount).toBe(ONE);
    const gas = result.gasUsed * (await d.deployer.publicClient.getTransactionReceipt({ hash: result.hash })).effectiveGasPrice;
    expect(before - (await ethBalance(d, gateway.account)) - gas).toBe(2n * ONE);
  });

  it('holdings stop short of 2^255: a deposit that would reach it is refused, in a batch skipped', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const token = await fundedToken(d.clients[1]!, (1n << 256n) - 1n);
    const huge = (1n << 255n) - 1n;
    const p = channel(d, a, b);
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: huge });
    await rejects(deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: 1n }), 'DepositRefused');
    const other = channel(d, b, a);
    const result = await depositMany(d.clients[1]!, { asset: token.address, deposits: [{ channelId: idOf(p), amount: 1n }, { channelId: idOf(other), amount: 7n }] });
    expect(result.skipped).toEqual([idOf(p)]);
    expect((await readHoldings(d.clients[1]!, idOf(other), token.address)).amount).toBe(7n);
    // Payouts are capped by holdings: an outcome of 2^256 - 1 pays exactly what is held.
    await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 1n, { assets: [token.address], balances: [[(1n << 256n) - 1n, 5n]], locked: [] }, true), a, b) });
    expect(await token.balanceOf(a.address)).toBe(huge);
    expect(await token.balanceOf(b.address)).toBe(0n);
  });
});

describe('signatures and kinds the contract refuses', () => {
  it('a zero participant: a signature that recovers to address 0 is refused', async () => {
    const d = devnet();
    const a = Signer.random();
    const p = { ...channel(d, a, a), participants: [a.address, NATIVE_ASSET] as const };
    const state = makeState(p, 1n, ethOutcome(0n, 0n), true);
    const digest = stateDigest(domainSeparator(p), state);
    // r = 0 makes ecrecover return 0; s low, v = 27.
    const zero = new Uint8Array(65);
    zero[63] = 1;
    zero[64] = 27;
    const err = await register(d.clients[1]!, { params: p, signed: { state, sigs: [a.sign(digest), zero] } }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(AdjudicatorRevertError);
    expect((err as AdjudicatorRevertError<'InvalidSignature'>).args[0]).toBe(1n);
  });

  it('a parent leaf naming a ledger channel cannot be released with an outcome of the caller\'s choosing', async () => {
    const d = devnet();
    const [A, G, B] = [Signer.random(), Signer.random(), Signer.random()];
    const T = 100n;
    const ledgerAsSub = channel(d, A, B);
    const gb = channel(d, G, B);
    const parentOutcome = ethOutcome(5n, 5n, [subAlloc(ledgerAsSub, [T], [0, 1])]);
    await deposit(d.clients[1]!, { channelId: idOf(gb), asset: NATIVE_ASSET, amount: T + 10n });
    await cooperativeClose(d.clients[1]!, { params: gb, signed: sign(gb, makeState(gb, 1n, parentOutcome, true), G, B) });
    await register(d.clients[1]!, { params: ledgerAsSub, signed: sign(ledgerAsSub, makeState(ledgerAsSub, 1n, ethOutcome(0n, 0n)), A, B) });
    await d.increaseTime(MIN_CHALLENGE_DURATION);
    // The client refuses this up front; sent anyway, with an outcome paying B all of T:
    const settled = { assets: parentOutcome.assets, lockedRoot: lockedRoot(parentOutcome.locked), held: [T] };
    const anyOutcome = { assets: [NATIVE_ASSET], balances: [[0n, T]] as const, lockedRoot: lockedRoot([]) };
    const leaf = { id: idOf(ledgerAsSub), balances: [T], indexMap: [0, 1] as const };
    await rejects(writeAdjudicator(d.clients[1]!, 'release', [toContractParams(gb, d.clients[1]!), settled, leaf, [], toContractParams(ledgerAsSub, d.clients[1]!), anyOutcome]), 'WrongKind');
  });

  it('after a chain-id change the domain follows the chain: states signed for the new id register, for the old one not', async () => {
    const d = await startDevnet();
    try {
      const [a, b] = [Signer.random(), Signer.random()];
      const test = createTestClient({ mode: 'anvil', transport: http(d.anvil.rpcUrl) });
      await test.request({ method: 'anvil_setChainId', params: [4242] } as never);
      const client = createChainClient({ rpcUrl: d.anvil.rpcUrl, chainId: 4242, privateKey: d.anvil.accounts[1]!.privateKey, adjudicator: d.deployer.adjudicator, pollingInterval: 20 });
      const before = channel(d, a, b);
      const after = { ...before, chainId: 4242n };
      const separator = await client.publicClient.readContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName: 'domainSeparator' });
      expect(separator).toBe(toHex(domainSeparator(after)));
      const old = sign(before, makeState(before, 1n, ethOutcome(0n, 0n)), a, b);
      await rejects(writeAdjudicator(client, 'register', [toContractParams(after, client), toContractState(old.state), toContractSignatures(old)]), 'InvalidSignature');
      await register(client, { params: after, signed: sign(after, makeState(after, 1n, ethOutcome(0n, 0n)), a, b) });
    } finally {
      await d.stop();
    }
  });
});

describe('hostile tokens', () => {
  it('a fee-on-transfer token and one that returns false are refused at deposit', async () => {
    const d = devnet();
    const token = await fundedToken(d.clients[1]!, 1000n);
    const id = idOf(channel(d, Signer.random(), Signer.random()));
    await token.setMode(TokenMode.FeeOnTransfer);
    await rejects(deposit(d.clients[1]!, { channelId: id, asset: token.address, amount: 100n }), 'UnsupportedToken');
    await token.setMode(TokenMode.ReturnFalse);
    await rejects(deposit(d.clients[1]!, { channelId: id, asset: token.address, amount: 100n }), 'TransferFailed');
    await token.setMode(TokenMode.NoReturnValue);
    await deposit(d.clients[1]!, { channelId: id, asset: token.address, amount: 100n });
    expect((await readHoldings(d.clients[1]!, id, token.address)).amount).toBe(100n);
  });

  it('a token that refuses, burns gas or returns false at payout is credited; the other asset and party are paid', async () => {
    const d = devnet();
    for (const mode of [TokenMode.ReturnFalse, TokenMode.BurnGas, TokenMode.FeeOnTransfer]) {
      const [a, b] = [Signer.random(), Signer.random()];
      const token = await fundedToken(d.clients[1]!, 1000n);
      const p = channel(d, a, b);
      await deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: 1000n });
      await deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: 10n });
      await token.setMode(mode);
      const outcome: Allocation = { assets: [token.address, NATIVE_ASSET], balances: [[600n, 400n], [3n, 7n]], locked: [] };
      await cooperativeClose(d.clients[1]!, { params: p, signed: sign(p, makeState(p, 1n, outcome, true), a, b) });
      expect([await ethBalance(d, a.address), await ethBalance(d, b.address)]).toEqual([3n, 7n]);
      if (mode === TokenMode.FeeOnTransfer) {
        // The token delivers less than it was sent: its own doing; the adjudicator sent it all.
        expect([await token.balanceOf(a.address), await token.balanceOf(b.address)]).toEqual([594n, 396n]);
        expect(await token.balanceOf(d.deployer.adjudicator)).toBe(0n);
        continue;
      }
      expect([await readCredit(d.clients[1]!, a.address, token.address), await readCredit(d.clients[1]!, b.address, token.address)]).toEqual([600n, 400n]);
    }
  });

  it('a token that re-enters at payout to close the channel again gets nothing twice', async () => {
    const d = devnet();
    const [a, b] = [Signer.random(), Signer.random()];
    const token = await fundedToken(d.clients[1]!, 1000n);
    const p = channel(d, a, b);
    await deposit(d.clients[1]!, { channelId: idOf(p), asset: token.address, amount: 100n });
    const final = sign(p, makeState(p, 1n, { assets: [token.address], balances: [[60n, 40n]], locked: [] }, true), a, b);
    await token.setReentry(d.deployer.adjudicator, registerCalldata(d.clients[1]!, p, final));
    await token.setMode(TokenMode.Reenter);
    await cooperativeClose(d.clients[1]!, { params: p, signed: final });
    expect([await token.balanceOf(a.address), await token.balanceOf(b.address)]).toEqual([60n, 40n]);
    expect(await token.balanceOf(d.deployer.adjudicator)).toBe(0n);
  });
});

describe('hostile receivers', () => {
  it('a participant whose code reverts, burns gas or re-enters is credited; the other is paid; it withdraws elsewhere', async () => {
    const d = devnet();
    for (const mode of [ReceiverMode.Revert, ReceiverMode.BurnGas, ReceiverMode.Reenter]) {
      const [a, b] = [Signer.random(), Signer.random()];
      const p = channel(d, a, b);
      await deposit(d.clients[1]!, { channelId: idOf(p), asset: NATIVE_ASSET, amount: 10n });
      const final = sign(p, makeState(p, 1n, ethOutcome(4n, 6n), true), a, b);
      // The re-entering receiver tries the same close again from inside its payout.
      await placeReceiver(d, a.address, mode, { target: d.deployer.adjudicator, data: registerCalldata(d.clients[1]!, p, final) });
      await cooperativeClose(d.clients[1]!, { params: p, signed: final });
      expect(await ethBalance(d, b.address)).toBe(6n);
      const credited = await readCredit(d.clients[1]!, a.address, NATIVE_ASSET);
      const received = await ethBalance(d, a.address);
      expect(credited + received).toBe(4n);
    }
  });
});
