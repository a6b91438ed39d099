// Example tests for ledger channels: deposits (ETH, ERC20, batched), cooperative close,
// dispute (register, refute, conclude), failed pushes, and the typed revert errors.
// Attacks on these paths (front-running, arbitrary inputs, hostile tokens) are in
// hostile.test.ts and fuzz.test.ts.
import { parseEther } from 'viem';
import { describe, expect, it } from 'vitest';
import { adjudicatorAbi, testTokenAbi } from '../../src/chain/abi.generated.ts';
import { conclude } from '../../src/chain/conclude.ts';
import { cooperativeClose } from '../../src/chain/cooperativeClose.ts';
import { approveDeposits, deposit, depositMany } from '../../src/chain/deposit.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { AdjudicatorRevertError, ChainMismatchError, decodeChainError, isAdjudicatorRevert } from '../../src/chain/errors.ts';
import { readDispute, readHoldings } from '../../src/chain/read.ts';
import { register } from '../../src/chain/register.ts';
import { readCredit, withdraw } from '../../src/chain/withdraw.ts';
import { FinalStateError } from '../../src/errors.ts';
import { NATIVE_ASSET, type Address, type Allocation, type Params } from '../../src/model/types.ts';
import { ethBalance, ethOutcome, idOf, makeParams, makeState, party, signedBy, signState, useDevnet, type Party } from '../../src/testing/chain.ts';

const devnet = useDevnet();
const ONE = parseEther('1');

async function rejects(promise: Promise<unknown>, name: string): Promise<AdjudicatorRevertError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected revert ${name}`).toBeInstanceOf(AdjudicatorRevertError);
  expect((err as AdjudicatorRevertError).errorName).toBe(name);
  return err as AdjudicatorRevertError;
}

async function funded(d: Devnet, a: Party, b: Party, amounts: readonly [bigint, bigint] = [ONE, ONE]): Promise<Params> {
  const params = makeParams(d, a, b);
  await deposit(a.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: amounts[0] });
  await deposit(b.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: amounts[1] });
  return params;
}

async function tokenBalance(d: Devnet, owner: Address): Promise<bigint> {
  return d.deployer.publicClient.readContract({ address: d.token, abi: testTokenAbi, functionName: 'balanceOf', args: [owner] });
}

async function mintTokens(d: Devnet, to: Party, amount: bigint): Promise<void> {
  const hash = await to.client.walletClient.writeContract({ address: d.token, abi: testTokenAbi, functionName: 'mint', args: [to.address, amount] });
  await to.client.publicClient.waitForTransactionReceipt({ hash });
}

describe('deposits', () => {
  it('credits ETH per channel and asset', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = await funded(d, a, b, [ONE, 2n * ONE]);
    expect(await readHoldings(a.client, idOf(params), NATIVE_ASSET)).toEqual({ amount: 3n * ONE, concluded: false });
  });

  it('funds many channels in one transaction, in ETH and in ERC20', async () => {
    const d = devnet();
    const g = party(d, 3);
    const ids = [1, 4, 5].map((i) => idOf(makeParams(d, g, party(d, i))));
    const amounts = [1n, 2n, 3n];
    await depositMany(g.client, { asset: NATIVE_ASSET, deposits: ids.map((channelId, i) => ({ channelId, amount: amounts[i]! })) });
    await mintTokens(d, g, 100n);
    expect(await approveDeposits(g.client, d.token, 60n)).not.toBeNull();
    expect(await approveDeposits(g.client, d.token, 60n)).toBeNull();
    await depositMany(g.client, { asset: d.token, deposits: ids.map((channelId, i) => ({ channelId, amount: amounts[i]! * 10n })) });
    for (const [i, id] of ids.entries()) {
      expect((await readHoldings(g.client, id, NATIVE_ASSET)).amount).toBe(amounts[i]);
      expect((await readHoldings(g.client, id, d.token)).amount).toBe(amounts[i]! * 10n);
    }
    expect(await tokenBalance(d, g.address)).toBe(40n);
  });

  it('rejects a wrong ETH value and an unapproved token', async () => {
    const d = devnet();
    const a = party(d, 1);
    const id = idOf(makeParams(d, a, party(d, 2)));
    const wrongValue = a.client.walletClient.writeContract({ address: a.client.adjudicator, abi: adjudicatorAbi, functionName: 'deposit', args: [id, NATIVE_ASSET, 2n], value: 1n });
    await rejects(wrongValue.catch((e: unknown) => Promise.reject(decodeChainError(e))), 'ValueMismatch');
    await rejects(deposit(party(d, 6).client, { channelId: id, asset: d.token, amount: 5n }), 'TransferFailed');
  });
});

describe('cooperative close', () => {
  it('pays both parties in the same transaction (ETH)', async () => {
    const d = devnet();
    const [a, b, submitter] = [party(d, 1), party(d, 2), party(d, 7)];
    const params = await funded(d, a, b);
    const [balA, balB] = [await ethBalance(d, a.address), await ethBalance(d, b.address)];
    const final = makeState(params, 3n, ethOutcome(parseEther('0.25'), parseEther('1.75')), true);
    await cooperativeClose(submitter.client, { params, signed: signedBy(params, final, a, b) });
    expect(await ethBalance(d, a.address)).toBe(balA + parseEther('0.25'));
    expect(await ethBalance(d, b.address)).toBe(balB + parseEther('1.75'));
    expect(await readHoldings(a.client, idOf(params), NATIVE_ASSET)).toEqual({ amount: 0n, concluded: true });
  });

  it('pays ETH and ERC20 together, and cannot be replayed or topped up afterwards', async () => {
    const d = devnet();
    const [a, b] = [party(d, 4), party(d, 5)];
    const params = makeParams(d, a, b);
    const id = idOf(params);
    await mintTokens(d, a, 1000n);
    await approveDeposits(a.client, d.token, 1000n);
    await deposit(a.client, { channelId: id, asset: d.token, amount: 1000n });
    await deposit(b.client, { channelId: id, asset: NATIVE_ASSET, amount: 10n });
    const outcome: Allocation = { assets: [d.token, NATIVE_ASSET], balances: [[600n, 400n], [3n, 7n]], locked: [] };
    const signed = signedBy(params, makeState(params, 9n, outcome, true), a, b);
    const tokenB = await tokenBalance(d, b.address);
    await cooperativeClose(a.client, { params, signed });
    expect(await tokenBalance(d, a.address)).toBe(600n);
    expect(await tokenBalance(d, b.address)).toBe(tokenB + 400n);
    await rejects(cooperativeClose(a.client, { params, signed }), 'ChannelConcluded');
    await rejects(deposit(b.client, { channelId: id, asset: NATIVE_ASSET, amount: 1n }), 'DepositRefused');
    const old = signedBy(params, makeState(params, 8n, outcome), a, b);
    await rejects(register(a.client, { params, signed: old }), 'ChannelConcluded');
  });

  it('needs a final state and both signatures', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = await funded(d, a, b);
    const state = makeState(params, 1n, ethOutcome(ONE, ONE));
    await expect(cooperativeClose(a.client, { params, signed: signedBy(params, state, a, b) })).rejects.toBeInstanceOf(FinalStateError);
    const final = { ...state, isFinal: true };
    const wrongSigner = signState(params, final, [a.signer, party(d, 3).signer]);
    const err = await rejects(register(a.client, { params, signed: wrongSigner }), 'InvalidSignature');
    expect(isAdjudicatorRevert(err, 'InvalidSignature') && err.args[0]).toBe(1n);
  });

  it('refuses params bound to another chain or adjudicator before sending', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = makeParams(d, a, b);
    const signed = signedBy(params, makeState(params, 1n, ethOutcome(1n, 1n), true), a, b);
    await expect(register(a.client, { params: { ...params, chainId: 1n }, signed })).rejects.toBeInstanceOf(ChainMismatchError);
    await expect(register(a.client, { params: { ...params, adjudicator: d.token }, signed })).rejects.toBeInstanceOf(ChainMismatchError);
  });
});

describe('dispute', () => {
  it('register, refute with a newer state, conclude after the challenge period, both paid', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = await funded(d, a, b);
    const id = idOf(params);
    const v5 = signedBy(params, makeState(params, 5n, ethOutcome(parseEther('1.5'), parseEther('0.5'))), a, b);
    const v6 = signedBy(params, makeState(params, 6n, ethOutcome(parseEther('0.2'), parseEther('1.8'))), a, b);
    await rejects(conclude(a.client, { params, outcome: v5.state.outcome }), 'NotRegistered');
    await register(a.client, { params, signed: v5 });
    const first = await readDispute(a.client, id);
    expect(first?.version).toBe(5n);
    await rejects(register(b.client, { params, signed: v5 }), 'VersionNotNewer');
    await register(b.client, { params, signed: v6 });
    const second = await readDispute(a.client, id);
    expect(second).toMatchObject({ version: 6n, timeout: first!.timeout });
    await rejects(conclude(a.client, { params, outcome: v6.state.outcome }), 'ChallengePeriodRunning');
    await d.increaseTime(params.challengeDuration);
    await rejects(register(a.client, { params, signed: signedBy(params, makeState(params, 7n, ethOutcome(ONE, ONE)), a, b) }), 'ChallengePeriodOver');
    await rejects(conclude(a.client, { params, outcome: v5.state.outcome }), 'OutcomeMismatch');
    const [balA, balB] = [await ethBalance(d, a.address), await ethBalance(d, b.address)];
    const submitter = party(d, 7);
    await conclude(submitter.client, { params, outcome: v6.state.outcome });
    expect(await ethBalance(d, a.address)).toBe(balA + parseEther('0.2'));
    expect(await ethBalance(d, b.address)).toBe(balB + parseEther('1.8'));
    expect(await readDispute(a.client, id)).toBeNull();
    await rejects(conclude(a.client, { params, outcome: v6.state.outcome }), 'NotRegistered');
    await rejects(register(a.client, { params, signed: v5 }), 'ChannelConcluded');
  });

  it('a final state concludes at once, even during a dispute', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = await funded(d, a, b);
    await register(a.client, { params, signed: signedBy(params, makeState(params, 2n, ethOutcome(ONE, ONE)), a, b) });
    const balB = await ethBalance(d, b.address);
    await register(a.client, { params, signed: signedBy(params, makeState(params, 3n, ethOutcome(0n, 2n * ONE), true), a, b) });
    expect(await ethBalance(d, b.address)).toBe(balB + 2n * ONE);
    const newer = signedBy(params, makeState(params, 4n, ethOutcome(ONE, ONE)), a, b);
    await rejects(register(a.client, { params, signed: newer }), 'ChannelConcluded');
    // The dispute the close ended can no longer conclude anything.
    await d.increaseTime(params.challengeDuration);
    await rejects(conclude(a.client, { params, outcome: ethOutcome(ONE, ONE) }), 'ChannelConcluded');
  });

  it('never pays more than the channel holds', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = await funded(d, a, b, [ONE, 0n]);
    const before = await ethBalance(d, b.address);
    await register(a.client, { params, signed: signedBy(params, makeState(params, 1n, ethOutcome(0n, 5n * ONE), true), a, b) });
    expect(await ethBalance(d, b.address)).toBe(before + ONE);
  });

  it('an under-funded channel pays participant 0 first, then participant 1 what is left', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = await funded(d, a, b, [5n, 0n]);
    const [balA, balB] = [await ethBalance(d, a.address), await ethBalance(d, b.address)];
    await register(party(d, 7).client, { params, signed: signedBy(params, makeState(params, 1n, ethOutcome(4n, 4n), true), a, b) });
    expect([(await ethBalance(d, a.address)) - balA, (await ethBalance(d, b.address)) - balB]).toEqual([4n, 1n]);
  });
});

describe('refused payouts', () => {
  it('are credited instead of blocking the close, and withdrawn later', async () => {
    const d = devnet();
    const [a, b] = [party(d, 8), party(d, 9)];
    const params = makeParams(d, a, b);
    await mintTokens(d, a, 50n);
    await approveDeposits(a.client, d.token, 50n);
    await deposit(a.client, { channelId: idOf(params), asset: d.token, amount: 50n });
    const block = async (isBlocked: boolean): Promise<void> => {
      const hash = await a.client.walletClient.writeContract({ address: d.token, abi: testTokenAbi, functionName: 'setBlocked', args: [b.address, isBlocked] });
      await a.client.publicClient.waitForTransactionReceipt({ hash });
    };
    await block(true);
    const outcome: Allocation = { assets: [d.token], balances: [[20n, 30n]], locked: [] };
    await cooperativeClose(a.client, { params, signed: signedBy(params, makeState(params, 1n, outcome, true), a, b) });
    expect(await tokenBalance(d, a.address)).toBe(20n);
    expect(await readCredit(b.client, b.address, d.token)).toBe(30n);
    await rejects(withdraw(b.client, d.token), 'TransferFailed');
    await rejects(withdraw(b.client, d.token, NATIVE_ASSET), 'InvalidRecipient');
    // Still blocked, b names another account of its own.
    const other = party(d, 0).address;
    const before = await tokenBalance(d, other);
    await withdraw(b.client, d.token, other);
    expect(await tokenBalance(d, other)).toBe(before + 30n);
    await block(false);
    await rejects(withdraw(b.client, d.token), 'NothingToWithdraw');
  });
});
