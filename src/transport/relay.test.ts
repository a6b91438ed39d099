import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { MalformedMessageError, PicopayError, WrongPeerError } from '../errors.ts';
import type { Address } from '../model/types.ts';
import { until } from '../testing/agents.ts';
import { MemoryRadio } from './ble/memory.ts';
import { BleTransport } from './ble/transport.ts';
import { MemoryNetwork } from './memory.ts';
import { isEnvelope, open, RELAY_STALE_MS, RELAY_WINDOW_MS, RelayAware, RelayClient, relaying, seal } from './relay.ts';
import { RoutedTransport } from './router.ts';
import type { Transport, TransportHandler } from './types.ts';

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);
const closing: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((t) => t.close()));
});

describe('relay envelopes', () => {
  const device = Signer.random();
  const [gateway, relay] = [Signer.random().address, Signer.random().address];

  it('open() gives back what seal() sealed, with the sealer as sender', () => {
    const env = open(seal(device, gateway, relay, text('hello'), 1234));
    expect(env).toEqual({ from: device.address.toLowerCase(), to: gateway.toLowerCase(), via: relay.toLowerCase(), at: 1234, frame: text('hello') });
  });

  it('refuses an envelope changed anywhere after sealing', () => {
    const sealed = seal(device, gateway, relay, text('pay 1'));
    for (let i = 1; i < sealed.length; i++) {
      const changed = sealed.slice();
      changed[i] = changed[i]! ^ 0x01;
      let env;
      try {
        env = open(changed);
      } catch (err) {
        expect(err).toBeInstanceOf(PicopayError);
        continue;
      }
      // A flip that leaves it valid must leave every field as sealed.
      expect(env).toEqual(open(sealed));
    }
  });

  it('refuses garbage with a typed error, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          open(new Uint8Array([0, ...bytes]));
        } catch (err) {
          expect(err instanceof MalformedMessageError || err instanceof WrongPeerError).toBe(true);
        }
      }),
    );
    expect(isEnvelope(new Uint8Array([0x85]))).toBe(false);
  });
});

/** A phone P with no internet, a vending machine V with BLE and the broker, a gateway G, and mallory Q on the broker. */
async function relayNetwork(options: { maxRoutes?: number } = {}) {
  const [p, v, g, q] = [Signer.random(), Signer.random(), Signer.random(), Signer.random()];
  const radio = new MemoryRadio();
  const network = new MemoryNetwork();
  const fast = { handshakeTimeoutMs: 500, probeMs: 200, connectTimeoutMs: 500 };
  const vNear = await BleTransport.start({ signer: v, peripheral: { backend: radio.peripheral(v.address), name: 'vending' }, ...fast });
  const vFar = network.endpoint(v.address);
  const refusedAtV: unknown[] = [];
  const vTransport = relaying(new RoutedTransport(vNear, vFar), vNear, vFar, (err) => refusedAtV.push(err));
  const pNear = await BleTransport.start({ signer: p, central: radio.central(p.address), ...fast });
  const refusedAtP: unknown[] = [];
  const pTransport = new RelayClient(pNear, v.address, p, { onRefused: (err) => refusedAtP.push(err) });
  const refusedAtG: unknown[] = [];
  const now = { ms: Date.now() };
  const gTransport = new RelayAware(network.endpoint(g.address), g, { onRefused: (err) => refusedAtG.push(err), now: () => now.ms, sweepMs: 10, ...options });
  const mallory = network.endpoint(q.address);
  const stolen: Uint8Array[] = [];
  mallory.setHandler({ message: (_f, frame) => stolen.push(frame) });
  closing.push(vTransport, pTransport, gTransport);
  const inbox = (t: { setHandler: RelayClient['setHandler'] }) => {
    const got: [Address, string][] = [];
    const presence: string[] = [];
    t.setHandler({ message: (from, frame) => got.push([from, str(frame)]), peerUp: (peer) => presence.push(`up ${peer}`), peerDown: (peer) => presence.push(`down ${peer}`) });
    return { got, presence };
  };
  const at = { p: inbox(pTransport), v: inbox(vTransport), g: inbox(gTransport) };
  await until(() => pNear.linked(v.address));
  return { p, v, g, q, radio, network, vFar, pNear, gTransport, pTransport, vTransport, mallory, stolen, at, refusedAtP, refusedAtV, refusedAtG, now };
}

describe('a device reaching its gateway through a nearby peer', () => {
  it('carries frames both ways as from their real senders, and the peer still talks to both directly', async () => {
    const n = await relayNetwork();
    await n.pTransport.send(n.g.address, text('open ledger'));
    await until(() => n.at.g.got.length === 1);
    expect(n.at.g.got).toEqual([[n.p.address.toLowerCase(), 'open ledger']]);
    await n.gTransport.send(n.p.address, text('accepted'));
    await until(() => n.at.p.got.length === 1);
    expect(n.at.p.got).toEqual([[n.g.address.toLowerCase(), 'accepted']]);
    await n.pTransport.send(n.v.address, text('voucher'));
    await n.vTransport.send(n.g.address, text('from v'));
    await until(() => n.at.v.got.length === 1 && n.at.g.got.length === 2);
    expect(n.at.v.got).toEqual([[n.p.address.toLowerCase(), 'voucher']]);
    expect(n.at.g.got[1]).toEqual([n.v.address.toLowerCase(), 'from v']);
  });

  it('the relaying peer cannot forge: a changed envelope reaches nobody, and its own envelope is its own', async () => {
    const n = await relayNetwork();
    const changed = seal(n.p, n.g.address, n.v.address, text('pay 1'));
    changed[changed.length - 70] = changed[changed.length - 70]! ^ 0xff;
    await n.vFar.send(n.g.address, changed);
    await n.vFar.send(n.g.address, seal(n.v, n.g.address, n.v.address, text('I am p')));
    await until(() => n.refusedAtG.length === 1 && n.at.g.got.length === 1);
    expect(n.at.g.got).toEqual([[n.v.address.toLowerCase(), 'I am p']]);
  });

  it('no one but the relay the device named can carry its envelopes: a replay through another broker identity neither counts nor steals the route', async () => {
    const n = await relayNetwork();
    const sniffed = seal(n.p, n.g.address, n.v.address, text('pay 5'), n.now.ms);
    await n.vFar.send(n.g.address, sniffed);
    await until(() => n.at.g.got.length === 1);
    await n.mallory.send(n.g.address, sniffed);
    await until(() => n.refusedAtG.length === 1);
    await n.gTransport.send(n.p.address, text('voucher accepted'));
    await until(() => n.at.p.got.length === 1);
    expect(n.at.g.got).toHaveLength(1);
    expect(n.at.p.got).toEqual([[n.g.address.toLowerCase(), 'voucher accepted']]);
    expect(n.stolen).toEqual([]);
  });

  it('the peer carries only envelopes that name it and come from their sealer; a device refuses one from outside the window', async () => {
    const n = await relayNetwork();
    // P hands V an envelope Q sealed (captured elsewhere): V does not launder it onto the broker.
    await n.pNear.send(n.v.address, seal(n.q, n.g.address, n.v.address, text('from q')));
    // Mallory pushes an ancient envelope of the gateway's through V: V refuses it (not hers), and so would P (too old).
    await n.mallory.send(n.v.address, seal(n.g, n.p.address, n.v.address, text('old proposal'), 0));
    await until(() => n.refusedAtV.length === 2);
    await n.pTransport.send(n.g.address, text('fresh'));
    await until(() => n.at.g.got.length === 1);
    expect(n.at.g.got).toEqual([[n.p.address.toLowerCase(), 'fresh']]);
    expect(n.at.p.got).toEqual([]);
  });

  it('a replay from before the window is refused by the gateway', async () => {
    const n = await relayNetwork();
    await n.vFar.send(n.g.address, seal(n.p, n.g.address, n.v.address, text('stale'), n.now.ms - RELAY_WINDOW_MS - 1));
    await until(() => n.refusedAtG.length === 1);
    expect(n.at.g.got).toEqual([]);
  });

  it('throwaway keys through another relay do not evict a device’s route', async () => {
    const n = await relayNetwork({ maxRoutes: 3 });
    await n.pTransport.send(n.g.address, text('hello'));
    await until(() => n.at.g.got.length === 1);
    for (let i = 0; i < 2; i++) await n.mallory.send(n.g.address, seal(Signer.random(), n.g.address, n.q.address, text('spam'), n.now.ms));
    await until(() => n.at.g.got.length === 3);
    await n.gTransport.send(n.p.address, text('reply'));
    await until(() => n.at.p.got.length === 1);
  });

  it('the gateway does not report a device offline while it hears it through a relay, and does once it has not for a while', async () => {
    const n = await relayNetwork();
    n.gTransport.watchPeer(n.p.address);
    await n.pTransport.send(n.g.address, text('here'));
    await until(() => n.at.g.got.length === 1);
    // A device heard only directly, for comparison: its going is reported, after P's would have been.
    const other = Signer.random().address;
    n.network.endpoint(other);
    n.gTransport.watchPeer(other);
    n.network.disconnect(n.p.address);
    n.network.disconnect(other);
    await until(() => n.at.g.presence.length === 1);
    expect(n.at.g.presence).toEqual([`down ${other.toLowerCase()}`]);
    // P walks away: no envelope, not even a keepalive, for longer than RELAY_STALE_MS.
    n.now.ms += RELAY_STALE_MS;
    await until(() => n.at.g.presence.length === 2);
    expect(n.at.g.presence[1]).toBe(`down ${n.p.address.toLowerCase()}`);
    // Heard again: up.
    await n.pTransport.send(n.g.address, text('back'));
    await until(() => n.at.g.presence.length === 3);
    expect(n.at.g.presence[2]).toBe(`up ${n.p.address.toLowerCase()}`);
  });

  it('after a restart, a watched device heard from neither the broker nor a relay is reported offline; one online at the broker is not', async () => {
    const g = Signer.random();
    // The broker's side, scripted: it reports presence when the test says so.
    let broker: TransportHandler | undefined;
    const inner: Transport = { self: g.address, send: async () => {}, setHandler: (h) => void (broker = h), close: async () => {} };
    const now = { ms: Date.now() };
    const gateway = new RelayAware(inner, g, { now: () => now.ms, sweepMs: 10 });
    closing.push(gateway);
    const presence: string[] = [];
    gateway.setHandler({ message: () => {}, peerUp: (p) => presence.push(`up ${p}`), peerDown: (p) => presence.push(`down ${p}`) });
    const [vanished, online] = [Signer.random().address, Signer.random().address].map((a) => a.toLowerCase() as Address);
    gateway.watchPeer(vanished!);
    gateway.watchPeer(online!);
    broker!.peerUp!(online!);
    now.ms += RELAY_STALE_MS;
    await until(() => presence.includes(`down ${vanished}`));
    expect(presence).toEqual([`up ${online}`, `down ${vanished}`]);
  });
});
