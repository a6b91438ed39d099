// Runs in the qemu guest, on BlueZ: one end of a BLE link check. The payee (peripheral,
// hci0) answers every `pay N` with `ack N`; the payer (central, hci1) sends them, as the
// protocol does, retransmitting what is lost, then waits for the payee to be restarted
// under it, reconnects and pays again. It writes what it measured to OUT/payer.json.
//   node link-check.mjs payee KEY NAME
//   node link-check.mjs payer KEY PAYEE_ADDRESS COUNT OUT [again]
// `again`: a payer started after another was killed: it links, pays COUNT and writes OUT/again.json.
import { writeFileSync } from 'node:fs';
import { Signer } from '../../src/crypto/keys.ts';
import { fromHex } from '../../src/model/hash.ts';
import type { Address } from '../../src/model/types.ts';
import { BluezCentral } from '../../src/transport/ble/bluez/central.ts';
import { BluezPeripheral } from '../../src/transport/ble/bluez/peripheral.ts';
import { BleTransport } from '../../src/transport/ble/transport.ts';

const [role, key, ...rest] = process.argv.slice(2);
const signer = new Signer(fromHex(key!));
const text = (s: string) => new TextEncoder().encode(s);
const json = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
const log = (...a: unknown[]) => console.log(`[${role} +${process.uptime().toFixed(2)}s]`, ...a);

async function payee(name: string): Promise<void> {
  const transport = await BleTransport.start({ signer, peripheral: { backend: new BluezPeripheral({ adapter: 'hci0' }), name }, probeMs: 3_000 });
  transport.setHandler({
    message: (from, frame) => {
      const msg = new TextDecoder().decode(frame);
      if (msg.startsWith('pay ')) void transport.send(from, text(`ack ${msg.split(' ')[1]}`)).catch((err) => log('ack failed', err.message));
    },
    peerUp: (p) => log('up', p),
    peerDown: (p) => log('down', p),
  });
  log('READY', transport.self);
}

async function payer(peer: Address, count: number, out: string, again: boolean): Promise<void> {
  const central = new BluezCentral({ adapter: 'hci1' });
  const result: Record<string, unknown> = {};
  const started = Date.now();
  if (!again) result.sightings = await central.scan(6_000);
  log('nearby', json(result.sightings));
  const transport = await BleTransport.start({ signer, central, probeMs: 3_000, connectTimeoutMs: 30_000 });
  const acked = new Set<number>();
  let down = 0;
  let up = 0;
  transport.setHandler({
    message: (_from, frame) => {
      const msg = new TextDecoder().decode(frame);
      if (msg.startsWith('ack ')) acked.add(Number(msg.slice(4)));
    },
    peerUp: () => up++,
    peerDown: () => down++,
  });
  transport.watchPeer(peer);
  const until = async (cond: () => boolean, ms: number, what: string) => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const pay = async (from: number, to: number) => {
    let resent = 0;
    for (let i = from; i < to; i++) {
      for (let attempt = 0; !acked.has(i); attempt++) {
        if (attempt > 0) resent++;
        if (attempt > 20) throw new Error(`payment ${i} never acknowledged: ${JSON.stringify(transport.stats)}`);
        await transport.send(peer, text(`pay ${i} ${'v'.repeat(80)}`)).catch(() => {});
        await until(() => acked.has(i), 1_500, `ack ${i}`).catch(() => {});
      }
    }
    return resent;
  };
  await until(() => transport.linked(peer), 60_000, 'first link');
  result.linkedMs = Date.now() - started;
  result.mtu = transport.mtu(peer);
  if (again) {
    // A payer restarted (its predecessor SIGKILLed, BlueZ still holding their connection): it links and pays on.
    const base = 1_000 + (Date.now() % 1_000_000) * 100;
    await pay(base, base + count / 2);
    writeFileSync(`${out}/again-half`, 'done');
    await pay(base + count / 2, base + count);
    writeFileSync(`${out}/again.json`, json({ acked: acked.size, linkedMs: result.linkedMs }));
    await transport.close();
    process.exit(0);
  }
  result.phase1Resent = await pay(0, count);
  result.phase1 = acked.size;
  log('PHASE1_DONE', acked.size);
  writeFileSync(`${out}/phase1`, 'done');
  // The guest script kills the payee and starts it again: the probe notices, the dialer reconnects.
  await until(() => down > 0, 60_000, 'payee gone');
  const gone = Date.now();
  await until(() => transport.linked(peer), 90_000, 'relink');
  result.reconnectMs = Date.now() - gone;
  result.phase2Resent = await pay(count, 2 * count);
  result.acked = acked.size;
  result.up = up;
  result.down = down;
  result.stats = transport.stats;
  writeFileSync(`${out}/payer.json`, json(result));
  log('RESULT', json(result));
  await transport.close();
  process.exit(0);
}

const main = role === 'payee' ? payee(rest[0]!) : payer(rest[0] as Address, Number(rest[1]), rest[2]!, rest[3] === 'again');
main.catch((err) => {
  log('ERROR', err instanceof Error ? err.stack : err);
  process.exit(1);
});
