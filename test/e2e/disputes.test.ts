import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cumulativeOf, deposit, readDispute, readHoldings, readSettled, registerVoucher, type Devnet } from '../../src/chain/index.ts';
import { advanceSettlement } from '../../src/chain/settle.ts';
import { holdingFrom } from '../../src/cli/watchtower.ts';
import { readKeystore } from '../../src/crypto/keystore.ts';
import { domainSeparator, voucherDigest } from '../../src/model/hash.ts';
import { type Address, type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { tempDir } from '../../src/testing/agents.ts';
import { processNetwork, type ProcessNetwork, readChannel, WEI } from './fixture.ts';

// The gateway settles on-chain by itself, as its own process against anvil: a payer that
// vanishes mid-download with its virtual channel open, and two devices that collude to
// resolve their virtual channel against one parent. Chain time moves with anvil's clock;
// every party ends with exactly its due on-chain.

const DEPOSIT = 10n ** 17n;
const LOCK = 10n ** 16n;

describe('the gateway settles on-chain by itself', () => {
  const network = processNetwork();
  let devnet: Devnet;
  let origin: ReturnType<ProcessNetwork['origin']>;
  beforeAll(() => {
    devnet = network.devnet();
    origin = network.origin();
  });

  /** A gateway, a hotspot and a payer as processes; the payer is downloading through its virtual channel, and the hotspot holds a voucher. */
  async function duringADownload(hotspotArgs: string[] = []) {
    const dir = tempDir('picopay-disputes-');
    const { start, keystore } = network;
    await keystore(join(dir, 'gateway', 'key.json'));
    const chainArgs = network.chainArgs();
    const gatewayArgs = ['gateway', '--data-dir', join(dir, 'gateway'), '--offline-timeout', '1', '--sweep-interval-ms', '300', ...chainArgs];
    const gateway = start('gateway', gatewayArgs);
    const gw = await gateway.next('ready');
    const common = ['--gateway', gw.address as string, '--mqtt-url', gw.mqttUrl as string, ...chainArgs, '--deposit', WEI(DEPOSIT), '--gateway-deposit', WEI(DEPOSIT), '--price', WEI(10n ** 14n)];
    const owner = devnet.clients[7]!;
    const hotspot = start('hotspot', ['device', '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--allow-upstream', new URL(origin.url).host, ...hotspotArgs, ...common]);
    const hs = await hotspot.next('ledger');
    await deposit(owner, { channelId: hs.channel as Bytes32, asset: NATIVE_ASSET, amount: DEPOSIT });
    const ready = await hotspot.next('ready');
    // A download far longer than the test: the payer is killed while it runs.
    const payer = start('payer', ['device', '--role', 'payer', '--data-dir', join(dir, 'payer'), '--hotspot', ready.address as string, '--proxy-url', ready.proxyUrl as string, '--download', `${origin.url}/bytes/1000000000`, '--lock', WEI(LOCK), ...common]);
    const ledger = await payer.next('ledger');
    await deposit(owner, { channelId: ledger.channel as Bytes32, asset: NATIVE_ASSET, amount: DEPOSIT });
    const vc = (await payer.next('virtual')).channel as Bytes32;
    const hotspotDb = join(dir, 'hotspot', 'device.db');
    // The hotspot has stored a voucher (what its tower can prove).
    await expect.poll(() => readChannel(hotspotDb, vc)?.voucher?.cumulative ?? 0n, { timeout: 60_000 }).toBeGreaterThan(0n);
    const balanceOf = (a: Address): Promise<bigint> => devnet.deployer.publicClient.getBalance({ address: a });
    return {
      dir,
      gateway,
      hotspot,
      payer,
      vc,
      parents: [ledger.channel as Bytes32, hs.channel as Bytes32] as const,
      payerAddress: ledger.address as Address,
      hotspotAddress: hs.address as Address,
      hotspotDb,
      payerDb: join(dir, 'payer', 'device.db'),
      httpUrl: gw.httpUrl as string,
      balanceOf,
      /** The gateway again, on its data directory; returns its status URL. */
      restartGateway: async (): Promise<string> => (await start('gateway', gatewayArgs).next('ready')).httpUrl as string,
    };
  }

  /** Moves anvil's clock past the latest timeout among `ids`' registrations, once all are registered. */
  async function pastTimeouts(ids: readonly Bytes32[]): Promise<void> {
    const client = devnet.deployer;
    await expect.poll(async () => (await Promise.all(ids.map((id) => readDispute(client, id)))).every(Boolean), { timeout: 60_000 }).toBe(true);
    const timeouts = (await Promise.all(ids.map((id) => readDispute(client, id)))).map((d) => d!.timeout);
    const { timestamp } = await client.publicClient.getBlock();
    const last = timeouts.reduce((a, b) => (a > b ? a : b));
    if (last >= timestamp) await devnet.increaseTime(last - timestamp + 1n);
  }

  /** Both parents concluded with nothing left locked: the contract holds nothing of them. */
  async function drained(parents: readonly Bytes32[]): Promise<boolean> {
    for (const id of parents) {
      if (!(await readHoldings(devnet.deployer, id, NATIVE_ASSET)).concluded) return false;
      if ((await readSettled(devnet.deployer, id))?.held.some((h) => h !== 0n) ?? true) return false;
    }
    return true;
  }

  const settledCount = async (httpUrl: string): Promise<number> => Number(/picopay_disputes_settled_total (\d+)/.exec(await (await fetch(`${httpUrl}/metrics`)).text())?.[1] ?? 0);

  it("a payer vanishes with its virtual channel open: the hotspot claims its highest voucher off-chain, the gateway secures it on-chain and settles the payer's channel", async () => {
    // The hotspot claims once its payer has answered no close request for two idle periods.
    const run = await duringADownload(['--idle-settle', '1']);
    const payerBefore = await run.balanceOf(run.payerAddress);
    await run.payer.stop('SIGKILL');
    const claimed = await run.hotspot.next('settled');
    const paid = BigInt(claimed.paid as string);
    expect(paid).toBeGreaterThan(0n);
    // Before signing, the gateway registered the voucher: the stream resolves at no less.
    expect(cumulativeOf((await readDispute(devnet.deployer, run.vc))!)).toBe(paid);
    // The hotspot's channel stays open, with what it earned; it runs no tower and sends no transaction.
    const hotspotLedger = readChannel(run.hotspotDb, run.parents[1])!;
    expect(hotspotLedger.current.state.outcome.locked).toEqual([]);
    expect(hotspotLedger.current.state.outcome.balances[0]![hotspotLedger.idx]).toBe(DEPOSIT + paid);
    // The payer's channel goes on-chain; the gateway is killed and restarted meanwhile (its
    // disputes are facts in its store); the periods pass.
    await expect.poll(async () => Boolean(await readDispute(devnet.deployer, run.parents[0])), { timeout: 60_000 }).toBe(true);
    await run.gateway.stop('SIGKILL');
    const httpUrl = await run.restartGateway();
    await pastTimeouts([run.parents[0], run.vc]);
    await expect.poll(() => drained([run.parents[0]]), { timeout: 60_000 }).toBe(true);
    await expect.poll(() => settledCount(httpUrl), { timeout: 20_000 }).toBe(1);
    expect(await run.balanceOf(run.payerAddress)).toBe(payerBefore + DEPOSIT - paid);
    // Only the payer's channel went on-chain: the hotspot's is still open at the gateway, and nothing is left disputed.
    const status = (await (await fetch(`${httpUrl}/status`)).json()) as { disputes: unknown[]; ledgerChannels: { id: string }[] };
    expect(status.disputes).toEqual([]);
    expect(status.ledgerChannels.map((c) => c.id)).toEqual([run.parents[1]]);
    expect((await readHoldings(devnet.deployer, run.parents[1], NATIVE_ASSET)).concluded).toBe(false);
  }, 300_000);

  it('the gateway vanishes for good with a virtual channel open: each device closes on-chain alone and gets its balance and what the virtual channel owes it', async () => {
    const run = await duringADownload();
    await run.gateway.stop('SIGKILL');
    await run.payer.stop('SIGKILL');
    await run.hotspot.stop();
    const payerBefore = await run.balanceOf(run.payerAddress);
    const hotspotBefore = await run.balanceOf(run.hotspotAddress);
    // The payer's own latest voucher is what it owes; the hotspot holds at most that (it stores one now and then).
    const owed = readChannel(run.payerDb, run.vc)!.voucher!.cumulative;
    const proven = readChannel(run.hotspotDb, run.vc)!.voucher!.cumulative;
    expect(proven).toBeLessThanOrEqual(owed);
    const closes = [];
    for (const who of ['payer', 'hotspot']) {
      const gasKey = await network.keystore(join(run.dir, `gas-${who}.json`));
      closes.push(network.start(`close-${who}`, ['close', '--data-dir', join(run.dir, who), '--gas-key', gasKey, '--force', ...network.chainArgs()]));
    }
    await pastTimeouts(run.parents);
    await pastTimeouts([run.vc]);
    for (const close of closes) {
      expect((await close.next('closed')).how).toBe('on-chain');
      expect(await close.exited()).toBe(0);
    }
    expect(await drained(run.parents)).toBe(true);
    // Each registered its own voucher; whichever stood when the period ended resolved it.
    const paid = cumulativeOf((await readDispute(devnet.deployer, run.vc))!);
    expect([proven, owed]).toContain(paid);
    expect(await run.balanceOf(run.payerAddress)).toBe(payerBefore + DEPOSIT - paid);
    expect(await run.balanceOf(run.hotspotAddress)).toBe(hotspotBefore + DEPOSIT + paid);
  }, 300_000);

  it('two devices collude and resolve their virtual channel against one parent: the gateway resolves the other and gets back all it put in', async () => {
    const run = await duringADownload();
    await run.payer.stop('SIGKILL');
    await run.hotspot.stop('SIGKILL');
    const payerBefore = await run.balanceOf(run.payerAddress);
    const hotspotBefore = await run.balanceOf(run.hotspotAddress);
    // The payer's key signs the whole lock over to the hotspot, which registers it and settles its own parent with it, paying gas from another account.
    const payerKey = readKeystore(join(run.dir, 'payer', 'key.json'), '');
    const hotspotVc = readChannel(run.hotspotDb, run.vc)!;
    const signature = payerKey.sign(voucherDigest(domainSeparator(hotspotVc.params), run.vc, LOCK));
    const accomplice = devnet.clients[8]!;
    await registerVoucher(accomplice, { params: hotspotVc.params, cumulative: LOCK, signature });
    const hotspotLedger = readChannel(run.hotspotDb, run.parents[1])!;
    const held = holdingFrom(hotspotLedger, (id) => (id === run.vc ? { ...hotspotVc, voucher: { cumulative: LOCK, sig: signature } } : undefined))!;
    expect((await advanceSettlement(accomplice, held)).status).toBe('waiting');
    // The gateway saw the virtual channel registered: it registers the payer's parent too.
    await pastTimeouts([...run.parents, run.vc]);
    for (let i = 0; i < 5 && (await advanceSettlement(accomplice, held)).status !== 'settled'; i++);
    await expect.poll(() => drained(run.parents), { timeout: 60_000 }).toBe(true);
    await expect.poll(() => settledCount(run.httpUrl), { timeout: 20_000 }).toBe(2);
    // The colluders got their deposits and nothing of the gateway's: the payer lost the lock, the hotspot gained it.
    expect(await run.balanceOf(run.payerAddress)).toBe(payerBefore + DEPOSIT - LOCK);
    expect(await run.balanceOf(run.hotspotAddress)).toBe(hotspotBefore + DEPOSIT + LOCK);
  }, 300_000);
});
