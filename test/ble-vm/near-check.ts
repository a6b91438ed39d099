// Runs in the qemu guest: one of two devices that pay each other near-field. Each is a
// real device agent (device/service.ts: keystore, SQLite store, MQTT to the gateway on the
// host, BLE on BlueZ beside it). Progress goes to marker files in the shared folder, where
// the host test (near.test.ts) stops and restarts the gateway.
//   node near-check.mjs payer|payee DATA_DIR [PAY_COUNT]
// The payer (central, hci1) opens a virtual channel and a stream with the payee through
// the gateway, waits for the gateway to go, pays PAY_COUNT times in the first and as many
// vouchers in the stream, and settles both once it is back. The
// payee (peripheral, hci0) pays PAY_COUNT times once the channel is open (it is started
// again with its count after the guest killed it half-way through the payer's payments).
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chainFunding } from '../../device/funding.ts';
import { payOnce } from '../../device/pay.ts';
import { startDevice } from '../../device/service.ts';
import type { ChannelRecord } from '../../src/channel/record.ts';
import { createLogger } from '../../src/log.ts';
import { type Address, type Bytes32, ChannelKind } from '../../src/model/types.ts';

const [role, dataDir, countArg] = process.argv.slice(2) as ['payer' | 'payee', string, string | undefined];
const OUT = process.env.BLE_VM_OUT!;
const config = JSON.parse(readFileSync(join(OUT, 'config.json'), 'utf8')) as {
  gateway: Address;
  mqttUrl: string;
  rpcUrl: string;
  chainId: string;
  adjudicator: Address;
  deposit: string;
  lock: string;
  price: { payer: string; payee: string };
};
const log = (...a: unknown[]) => console.log(`[${role} +${process.uptime().toFixed(2)}s]`, ...a);
// Written whole, then renamed: the host never reads half a marker.
const mark = (name: string, value: unknown = {}) => {
  const path = join(OUT, `${role}.${name}`);
  writeFileSync(`${path}.tmp`, JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
  renameSync(`${path}.tmp`, path);
};
const marked = (name: string) => existsSync(join(OUT, name));
async function until(cond: () => boolean, what: string, ms = 240_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
/** Retries `attempt` while the peer or the gateway is away (opening and settling may be asked again; a payment may not: payOnce). */
async function retried<T>(what: string, attempt: () => Promise<T>, ms = 240_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > end) throw err;
      log(`${what} failed (${(err as Error).message}); again`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

const chain = { chainId: BigInt(config.chainId), adjudicator: config.adjudicator };
const payeeAddress = () => JSON.parse(readFileSync(join(OUT, 'payee.ledger'), 'utf8')).address as Address;
const dev = await startDevice({
  dataDir,
  password: '',
  gateway: config.gateway,
  mqttUrl: config.mqttUrl,
  ...chain,
  deposit: BigInt(config.deposit),
  gatewayDeposit: BigInt(config.deposit),
  funding: chainFunding({ rpcUrl: config.rpcUrl, ...chain, confirmations: 1 }),
  near: role === 'payee' ? { role, adapter: 'hci0', name: 'kiosk' } : { role, adapter: 'hci1' },
  logger: createLogger(`near-${role}`),
});
const { agent } = dev;
dev.agent.on('failed', (err) => {
  log('store failed', err.message);
  process.exit(3);
});
mark('ledger', { address: dev.signer.address, ledger: dev.ledger.id });
await dev.untilFunded(240_000);
log('funded', dev.signer.address);
const virtual = () => agent.channels().find((c) => c.params.kind === ChannelKind.Virtual);
const mine = (id: Bytes32) => {
  const c = agent.channel(id);
  return c.current.state.outcome.balances[0]![c.idx]!;
};
const count = Number(countArg ?? 0);
let settled: ChannelRecord | undefined;
let streamSettled: ChannelRecord | undefined;
agent.on('settled', (c) => {
  if (c.params.kind === ChannelKind.Virtual) settled = c;
  if (c.params.kind === ChannelKind.Stream) streamSettled = c;
});
const stream = () => agent.channels().find((c) => c.params.kind === ChannelKind.Stream);
const lock = BigInt(config.lock);

if (role === 'payer') {
  const payee = payeeAddress();
  dev.near!.watchPeer(payee);
  const vc = virtual() ?? (await retried('open', () => agent.openVirtual(payee, { gateway: config.gateway, balances: [[lock, lock]] })));
  // And a stream, for vouchers: the payer pays, the payee acknowledges.
  const voucherChannel = stream() ?? (await retried('open the stream', () => agent.openVirtual(payee, { gateway: config.gateway, kind: ChannelKind.Stream, balances: [[lock, 0n]] })));
  mark('vc', { channel: vc.id, stream: voucherChannel.id });
  log('virtual channel', vc.id);
  await until(() => marked('gateway-down'), 'the host stopping the gateway');
  const price = BigInt(config.price.payer);
  for (let i = 0; i < count; i++) {
    await payOnce(agent, vc.id, price, 240_000, (err) => log(`payment ${i}: ${(err as Error).message}; waiting for its answer`));
    if (i === count / 2 - 1) mark('half');
  }
  log('paid', count, 'over', dev.near!.linked(payee) ? 'BLE' : 'MQTT');
  // Both ways: the payee's payments come in meanwhile; the channel ends once they all have.
  const expected = lock - BigInt(count) * price + BigInt(count) * BigInt(config.price.payee);
  await until(() => mine(vc.id) === expected, `the payee's payments (${mine(vc.id)} of ${expected})`);
  // Vouchers too: one per payment, never more than two ahead of the payee's acknowledgements.
  for (let i = 0; i < count; i++) {
    await agent.streamWindow(voucherChannel.id, 2n * price);
    agent.payStream(voucherChannel.id, price);
  }
  await until(() => agent.streamUnacked(voucherChannel.id) === 0n, "the payee's acknowledgement of every voucher");
  mark('paid', { balance: mine(vc.id), vouchers: agent.channel(voucherChannel.id).voucher?.cumulative, ble: dev.near!.stats });
  await until(() => marked('gateway-up'), 'the host restarting the gateway');
  settled = await retried('settle', () => agent.settleVirtual(vc.id));
  streamSettled = await retried('settle the stream', () => agent.settleVirtual(voucherChannel.id));
} else {
  await until(() => virtual() !== undefined && agent.isFunded(virtual()!.id), 'the payer opening the channel');
  const vc = virtual()!;
  const price = BigInt(config.price.payee);
  for (let i = 0; i < count; i++) await payOnce(agent, vc.id, price, 240_000, (err) => log(`payment ${i}: ${(err as Error).message}; waiting for its answer`));
  log('paid', count);
  await until(() => settled !== undefined && streamSettled !== undefined, 'the channels settling', 480_000);
}
const vc = settled!;
const ledger = agent.channel(dev.ledger.id);
mark('result', {
  vc: vc.current.state.outcome.balances[0],
  stream: streamSettled!.current.state.outcome.balances[0],
  final: vc.current.state.isFinal && streamSettled!.current.state.isFinal,
  ledger: ledger.current.state.outcome.balances[0],
  idx: ledger.idx,
  ledgerLocked: ledger.current.state.outcome.locked.length,
});
log('done');
await dev.stop();
process.exit(0);
