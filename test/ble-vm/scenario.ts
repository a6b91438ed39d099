import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { PicopayProcess } from '../../demo/processes.ts';
import { bundleDevice, DEVICE_BUNDLE } from '../../device/bundle.ts';
import { deposit, readHoldings } from '../../src/chain/index.ts';
import { type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { tempDir } from '../../src/testing/agents.ts';
import { type ProcessNetwork, readChannel } from '../e2e/fixture.ts';
import { freePort, waitFor } from '../transport/helpers.ts';
import { type GuestRun, guestFolder, runGuest } from './vm.ts';

// What the guest tests of two devices share: the gateway on the host (on fixed ports, so
// that it can be killed and started again), the bundle of near-check.ts and its config in
// the shared folder, the owners' deposits, and the final check that every store agrees.

export const DEPOSIT = 10n ** 17n;
export const LOCK = 10n ** 16n;
export const PRICE = { payer: 10n ** 13n, payee: 4n * 10n ** 12n };
export const COUNT = 100;

export interface Scenario {
  out: string;
  guest: Promise<GuestRun>;
  /** Whether the guest is done, or the marker file is there. */
  marker(name: string): () => boolean;
  read(name: string): any;
  stopGateway(): Promise<void>;
  startGateway(): Promise<void>;
  /** Both devices' ledger channels, funded by their owners. */
  ledgers: Record<'payer' | 'payee', Bytes32>;
  gatewayDb: string;
}

/** Boots `script` with the two bundles it may run: near-check.mjs and the lean device build (picopay-device.mjs). */
export async function startScenario(net: ProcessNetwork, script: string): Promise<Scenario> {
  const out = guestFolder();
  const bundle = join(import.meta.dirname, '..', '..', 'dist', 'ble-near-check.mjs');
  await bundleDevice(bundle, join(import.meta.dirname, 'near-check.ts'));
  await bundleDevice();
  writeFileSync(join(out, 'near-check.mjs'), `import ${JSON.stringify(bundle)};\n`);
  writeFileSync(join(out, 'picopay-device.mjs'), `import ${JSON.stringify(DEVICE_BUNDLE)};\n`);
  const dir = tempDir('picopay-near-');
  const devnet = net.devnet();
  await net.keystore(join(dir, 'gateway', 'key.json'));
  const mqttPort = await freePort();
  const gatewayArgs = ['gateway', '--data-dir', join(dir, 'gateway'), '--mqtt-port', String(mqttPort), '--mqtt-names', `10.0.2.2:${mqttPort}`, '--http-port', String(await freePort()), ...net.chainArgs()];
  let gateway: PicopayProcess = net.start('gateway', gatewayArgs);
  const gw = await gateway.next('ready');
  // The guest reaches the host's loopback as 10.0.2.2.
  const guestHost = (url: string) => url.replace('127.0.0.1', '10.0.2.2');
  writeFileSync(
    join(out, 'config.json'),
    JSON.stringify({ gateway: gw.address, mqttUrl: guestHost(gw.mqttUrl as string), rpcUrl: guestHost(devnet.anvil.rpcUrl), chainId: String(gw.chainId), adjudicator: gw.adjudicator, deposit: String(DEPOSIT), lock: String(LOCK), price: { payer: String(PRICE.payer), payee: String(PRICE.payee) } }),
  );
  // The same, as `picopay device` options, for the CLI's guest script.
  const wei = (n: bigint) => `${n}wei`;
  const args = ['--gateway', gw.address, '--chain-id', String(gw.chainId), '--adjudicator', gw.adjudicator, '--mqtt-url', guestHost(gw.mqttUrl as string), '--rpc-url', guestHost(devnet.anvil.rpcUrl), '--deposit', wei(DEPOSIT), '--gateway-deposit', wei(DEPOSIT), '--fund-timeout-ms', '240000'];
  writeFileSync(join(out, 'device.args'), args.join(' '));
  writeFileSync(join(out, 'price'), wei(PRICE.payer));
  const guest = runGuest(script, out, 14 * 60_000);
  let done = false;
  void guest.finally(() => (done = true)).catch(() => {});
  const marker = (name: string) => () => done || existsSync(join(out, name));
  const read = (name: string) => JSON.parse(readFileSync(join(out, name), 'utf8'));
  const owner = devnet.clients[6]!;
  const ledgers = {} as Record<'payer' | 'payee', Bytes32>;
  for (const role of ['payee', 'payer'] as const) {
    await waitFor(marker(`${role}.ledger`), `the ${role}'s ledger channel`, 8 * 60_000);
    if (done) break;
    ledgers[role] = read(`${role}.ledger`).ledger;
    if ((await readHoldings(owner, ledgers[role], NATIVE_ASSET)).amount === 0n) await deposit(owner, { channelId: ledgers[role], asset: NATIVE_ASSET, amount: DEPOSIT });
  }
  return {
    out,
    guest,
    marker,
    read,
    ledgers,
    gatewayDb: join(dir, 'gateway', 'gateway.db'),
    stopGateway: () => gateway.stop('SIGKILL'),
    startGateway: async () => {
      gateway = net.start('gateway', gatewayArgs);
      await gateway.next('ready');
    },
  };
}

/** The guest passed, and both devices and the gateway hold the same settled outcome: the payer paid `paid` net, and `streamed` in vouchers. */
export async function expectSettled(s: Scenario, paid: bigint, streamed: bigint): Promise<void> {
  const run = await s.guest;
  expect(run.code, run.console.slice(-8000)).toBe(0);
  const payer = s.read('payer.result');
  const payee = s.read('payee.result');
  expect(payer.vc).toEqual(payee.vc);
  expect(payer.final && payee.final).toBe(true);
  expect(payer.vc.map(BigInt)).toEqual([LOCK - paid, LOCK + paid]);
  expect(payer.stream).toEqual(payee.stream);
  expect(payer.stream.map(BigInt)).toEqual([LOCK - streamed, streamed]);
  expect(BigInt(payer.ledger[payer.idx])).toBe(DEPOSIT - paid - streamed);
  expect(BigInt(payee.ledger[payee.idx])).toBe(DEPOSIT + paid + streamed);
  expect([payer.ledgerLocked, payee.ledgerLocked]).toEqual([0, 0]);
  for (const [role, result] of [['payer', payer], ['payee', payee]] as const) {
    await waitFor(() => readChannel(s.gatewayDb, s.ledgers[role])?.current.state.outcome.locked.length === 0, `the gateway's view of the ${role}'s ledger`, 60_000);
    expect(readChannel(s.gatewayDb, s.ledgers[role])!.current.state.outcome.balances[0]!.map(String)).toEqual(result.ledger);
  }
}
