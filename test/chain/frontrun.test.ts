// A newer state or a higher voucher lands whatever was registered before it in the same
// block. With automine off, the attacker's transaction (a slightly newer but still stale
// state, or a voucher 1 wei higher) goes first in each block, the honest party's call
// second: the contract compares against the stored version and amount, so the honest
// one still lands, for ledger, bidirectional virtual and stream channels.
import { createTestClient, type Hex, http, parseEther, parseGwei, type TransactionReceipt } from 'viem';
import { describe, expect, it } from 'vitest';
import { adjudicatorAbi } from '../../src/chain/abi.generated.ts';
import type { ChainClient, TxResult } from '../../src/chain/client.ts';
import { conclude } from '../../src/chain/conclude.ts';
import { concludeVirtual } from '../../src/chain/concludeVirtual.ts';
import { cooperativeClose } from '../../src/chain/cooperativeClose.ts';
import { deposit } from '../../src/chain/deposit.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { cumulativeOf, toContractParams, toContractSignature, toContractSignatures, toContractState } from '../../src/chain/encode.ts';
import { readDispute } from '../../src/chain/read.ts';
import { register } from '../../src/chain/register.ts';
import { registerVoucher } from '../../src/chain/registerVirtual.ts';
import { outcomeHash } from '../../src/model/hash.ts';
import { ChannelKind, NATIVE_ASSET, type Params, type SignedState } from '../../src/model/types.ts';
import { ethBalance, ethOutcome, idOf, makeParams, makeState, party, signedBy, signVoucher, subAlloc, useDevnet, type Party } from '../../src/testing/chain.ts';

const devnet = useDevnet();
const ONE = parseEther('1');

type Attack = { functionName: 'register'; args: ReturnType<typeof registerArgs> } | { functionName: 'registerVoucher'; args: ReturnType<typeof voucherArgs> };

function registerArgs(client: ChainClient, params: Params, signed: SignedState) {
  return [toContractParams(params, client), toContractState(signed.state), toContractSignatures(signed)] as const;
}

function voucherArgs(client: ChainClient, params: Params, cumulative: bigint, payer: Party) {
  return [toContractParams(params, client), cumulative, toContractSignature(signVoucher(params, cumulative, payer))] as const;
}

/**
 * Mines one block holding the attacker's transaction first (it pays a far higher priority
 * fee) and the honest party's call, sent from `honestClient`, second; returns both outcomes.
 */
async function attackerFirst(
  d: Devnet,
  attacker: Party,
  attack: Attack,
  honestClient: ChainClient,
  honest: (client: ChainClient) => Promise<TxResult>,
): Promise<{ attack: TransactionReceipt; honest: TxResult }> {
  const test = createTestClient({ mode: 'anvil', transport: http(d.anvil.rpcUrl) });
  await test.setAutomine(false);
  try {
    const attackHash = await attacker.client.walletClient.writeContract({
      address: attacker.client.adjudicator,
      abi: adjudicatorAbi,
      ...attack,
      gas: 3_000_000n,
      maxPriorityFeePerGas: parseGwei('50'),
      maxFeePerGas: parseGwei('100'),
    } as never);
    let broadcast!: (hash: Hex) => void;
    const signed = new Promise<Hex>((resolve) => (broadcast = resolve));
    const honestCall = honest({ ...honestClient, send: { onBroadcast: (p) => broadcast(p.hashes.at(-1)!) } });
    // The honest call estimates against the last block (the attack is still pending), signs,
    // and hands the transaction to the node: mine once the node has it.
    const hash = await Promise.race([signed, honestCall.then((tx) => tx.hash)]);
    await expect.poll(() => d.deployer.publicClient.getTransaction({ hash }).then(() => true, () => false), { timeout: 10_000 }).toBe(true);
    await test.mine({ blocks: 1 });
    const [honestTx, attackReceipt] = await Promise.all([honestCall, d.deployer.publicClient.waitForTransactionReceipt({ hash: attackHash })]);
    const honestReceipt = await d.deployer.publicClient.getTransactionReceipt({ hash: honestTx.hash });
    expect(attackReceipt.blockNumber).toBe(honestReceipt.blockNumber);
    expect(attackReceipt.transactionIndex).toBeLessThan(honestReceipt.transactionIndex);
    return { attack: attackReceipt, honest: honestTx };
  } finally {
    await test.setAutomine(true);
  }
}

async function fundedPair(d: Devnet, a: Party, b: Party): Promise<Params> {
  const params = makeParams(d, a, b);
  await deposit(a.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: ONE });
  await deposit(b.client, { channelId: idOf(params), asset: NATIVE_ASSET, amount: ONE });
  return params;
}

describe('the attacker goes first in every block', () => {
  it('ledger: a stale state registered ahead of the refutation does not keep the dispute', async () => {
    const d = devnet();
    const [a, b] = [party(d, 1), party(d, 2)];
    const params = await fundedPair(d, a, b);
    // Versions 1..3 pay a well; b holds version 10, which pays b 1.8.
    const stale = [1n, 2n, 3n].map((v) => signedBy(params, makeState(params, v, ethOutcome(parseEther('1.8') - v, parseEther('0.2') + v)), a, b));
    const newest = signedBy(params, makeState(params, 10n, ethOutcome(parseEther('0.2'), parseEther('1.8'))), a, b);
    await register(a.client, { params, signed: stale[0]! });

    const round = await attackerFirst(d, a, { functionName: 'register', args: registerArgs(a.client, params, stale[1]!) }, b.client, (c) => register(c, { params, signed: newest }));
    expect(round.attack.status).toBe('success');
    expect((await readDispute(b.client, idOf(params)))?.version).toBe(10n);
    // Once the newest is registered, every stale state reverts.
    await expect(register(a.client, { params, signed: stale[2]! })).rejects.toMatchObject({ errorName: 'VersionNotNewer' });

    await d.increaseTime(params.challengeDuration);
    const before = await ethBalance(d, b.address);
    await conclude(d.clients[9]!, { params, outcome: newest.state.outcome });
    expect((await ethBalance(d, b.address)) - before).toBe(parseEther('1.8'));
  });

  it('bidirectional virtual: the newer state both signed wins over a version+1 placed ahead of it', async () => {
    const d = devnet();
    const [A, G, B] = [party(d, 1), party(d, 2), party(d, 3)];
    const gb = await fundedPair(d, G, B);
    const vc = makeParams(d, A, B, ChannelKind.Virtual);
    const T = parseEther('0.5');
    const stale = [1n, 2n].map((v) => signedBy(vc, makeState(vc, v, ethOutcome(T, 0n)), A, B));
    const newest = signedBy(vc, makeState(vc, 7n, ethOutcome(parseEther('0.1'), parseEther('0.4'))), A, B);
    await register(A.client, { params: vc, signed: stale[0]! });
    await attackerFirst(d, A, { functionName: 'register', args: registerArgs(A.client, vc, stale[1]!) }, B.client, (c) => register(c, { params: vc, signed: newest }));
    expect((await readDispute(B.client, idOf(vc)))?.outcome).toBe(outcomeHash(newest.state.outcome));

    // G–B concludes still locking the virtual channel; its release pays B what version 7 says.
    const gbFinal = makeState(gb, 3n, ethOutcome(ONE - T / 2n, ONE - T / 2n, [subAlloc(vc, [T], [0, 1])]), true);
    await cooperativeClose(G.client, { params: gb, signed: signedBy(gb, gbFinal, G, B) });
    await d.increaseTime(vc.challengeDuration);
    const before = await ethBalance(d, B.address);
    await concludeVirtual(d.clients[9]!, { parent: gb, parentOutcome: gbFinal.outcome, virtual: vc, virtualOutcome: newest.state.outcome });
    expect((await ethBalance(d, B.address)) - before).toBe(parseEther('0.4'));
  });

  it('stream: the highest voucher lands over a 1-wei-higher one, from the payee (resolves at once) or a watchtower', async () => {
    const d = devnet();
    const [A, B] = [party(d, 1), party(d, 3)];
    const highest = parseEther('0.3');

    // The payee submits itself: the channel resolves in that block.
    const vc = makeParams(d, A, B, ChannelKind.Stream);
    await registerVoucher(A.client, { params: vc, cumulative: 0n, signature: null });
    const byPayee = await attackerFirst(d, A, { functionName: 'registerVoucher', args: voucherArgs(A.client, vc, 1n, A) }, B.client, (c) =>
      registerVoucher(c, { params: vc, cumulative: highest, signature: signVoucher(vc, highest, A) }),
    );
    const resolved = (await readDispute(B.client, idOf(vc)))!;
    expect(cumulativeOf(resolved)).toBe(highest);
    const block = await d.deployer.publicClient.getBlock({ blockNumber: byPayee.honest.blockNumber });
    expect(resolved.timeout).toBe(block.timestamp);

    // A watchtower submits for the payee: the amount lands, the challenge period stays.
    const watched = makeParams(d, A, B, ChannelKind.Stream);
    await registerVoucher(A.client, { params: watched, cumulative: 1n, signature: signVoucher(watched, 1n, A) });
    const first = (await readDispute(B.client, idOf(watched)))!;
    await attackerFirst(d, A, { functionName: 'registerVoucher', args: voucherArgs(A.client, watched, 2n, A) }, d.clients[9]!, (c) =>
      registerVoucher(c, { params: watched, cumulative: highest, signature: signVoucher(watched, highest, A) }),
    );
    expect(await readDispute(B.client, idOf(watched))).toEqual({ ...first, outcome: resolved.outcome });
  });

  it("stream: a copy of the payee's own voucher placed ahead of it does not stop the payee resolving at once", async () => {
    const d = devnet();
    const [A, B, outsider] = [party(d, 1), party(d, 3), party(d, 4)];
    const vc = makeParams(d, A, B, ChannelKind.Stream);
    const highest = parseEther('0.2');
    const copied = await attackerFirst(d, outsider, { functionName: 'registerVoucher', args: voucherArgs(outsider.client, vc, highest, A) }, B.client, (c) =>
      registerVoucher(c, { params: vc, cumulative: highest, signature: signVoucher(vc, highest, A) }),
    );
    expect(copied.attack.status).toBe('success');
    const d1 = (await readDispute(B.client, idOf(vc)))!;
    const block = await d.deployer.publicClient.getBlock({ blockNumber: copied.honest.blockNumber });
    expect(d1.timeout).toBe(block.timestamp);
    expect(cumulativeOf(d1)).toBe(highest);
  });
});
