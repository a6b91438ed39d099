import { afterEach, describe, expect, it } from 'vitest';
import { Signer } from '../../crypto/keys.ts';
import { TransportError } from '../../errors.ts';
import type { Address } from '../../model/types.ts';
import { until } from '../../testing/agents.ts';
import { fragment, Reassembler } from './framing.ts';
import { Encoder } from 'cbor-x';
import { CentralHandshake, type LinkMessage } from './handshake.ts';
import type { BleLink, LinkEvents } from './link.ts';
import { MemoryRadio } from './memory.ts';
import { BleTransport, type BleTransportOptions } from './transport.ts';

const FAST = { handshakeTimeoutMs: 500, probeMs: 100, connectTimeoutMs: 500 };
const open: BleTransport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function start(options: BleTransportOptions) {
  const transport = await BleTransport.start({ ...FAST, ...options });
  open.push(transport);
  const got: [Address, string][] = [];
  const presence: string[] = [];
  transport.setHandler({
    message: (from, frame) => got.push([from, new TextDecoder().decode(frame)]),
    peerUp: (p) => presence.push(`up ${p}`),
    peerDown: (p) => presence.push(`down ${p}`),
  });
  return { transport, got, presence };
}

function pair(radio = new MemoryRadio()) {
  const payee = Signer.random();
  const payer = Signer.random();
  return {
    radio,
    payee,
    payer,
    startPayee: (extra: Partial<BleTransportOptions> = {}) => start({ signer: payee, peripheral: { backend: radio.peripheral(payee.address), name: 'kiosk' }, ...extra }),
    startPayer: () => start({ signer: payer, central: radio.central(payer.address) }),
  };
}

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const text = (s: string) => new TextEncoder().encode(s);

describe('BleTransport', () => {
  it('binds a link by the handshake and carries frames both ways, from the proven addresses', async () => {
    const p = pair();
    const payee = await p.startPayee();
    const payer = await p.startPayer();
    payer.transport.watchPeer(p.payee.address);
    await until(() => payer.transport.linked(p.payee.address) && payee.transport.linked(p.payer.address));
    await payer.transport.send(p.payee.address, text('voucher 1'));
    await payee.transport.send(p.payer.address, text('receipt 1'));
    await until(() => payee.got.length === 1 && payer.got.length === 1);
    expect(payee.got).toEqual([[p.payer.address.toLowerCase(), 'voucher 1']]);
    expect(payer.got).toEqual([[p.payee.address.toLowerCase(), 'receipt 1']]);
    expect(payee.presence).toEqual([`up ${p.payer.address.toLowerCase()}`]);
  });

  it('fragments a large frame at the smallest MTU and puts it back together', async () => {
    const p = pair(new MemoryRadio({ mtu: 23 }));
    const payee = await p.startPayee();
    const payer = await p.startPayer();
    payer.transport.watchPeer(p.payee.address);
    await until(() => payer.transport.linked(p.payee.address));
    const big = 'x'.repeat(5000);
    await payer.transport.send(p.payee.address, text(big));
    await until(() => payee.got.length === 1);
    expect(payee.got[0]![1]).toBe(big);
  });

  it('sends nothing and starts connecting when no link is up: the router falls back to its far link', async () => {
    const p = pair();
    const payer = await p.startPayer();
    await expect(payer.transport.send(p.payee.address, text('lost'))).rejects.toThrow(TransportError);
    await p.startPayee();
    await until(() => payer.transport.linked(p.payee.address));
  });

  it('refuses a peripheral that advertises an address whose key it does not hold', async () => {
    const radio = new MemoryRadio();
    const victim = Signer.random();
    const mallory = Signer.random();
    const payer = Signer.random();
    const impostor = await start({ signer: mallory, peripheral: { backend: radio.peripheral(mallory.address, victim.address), name: 'kiosk' } });
    const central = await start({ signer: payer, central: radio.central(payer.address) });
    central.transport.watchPeer(victim.address);
    // The payer's proof names the victim, so it does not bind mallory's link (nor could she replay it to the victim).
    await until(() => impostor.transport.stats.refusedLinks >= 2);
    expect(central.transport.linked(victim.address)).toBe(false);
    expect(impostor.transport.linked(payer.address)).toBe(false);
    expect(impostor.got).toEqual([]);
  });

  it('drops frames before the handshake and closes a link whose central names a key it does not hold', async () => {
    const p = pair();
    const payee = await p.startPayee();
    const mallory = Signer.random();
    const victim = Signer.random();
    const reassembler = new Reassembler(1024);
    const heard: Uint8Array[] = [];
    let closed = false;
    const events: LinkEvents = {
      packet: (d) => {
        const m = reassembler.push(d);
        if (m) heard.push(m);
      },
      closed: () => (closed = true),
    };
    const link: BleLink = await p.radio.central(mallory.address).connect(p.payee.address, events, 500);
    // A frame before any handshake: nobody can be named as its sender.
    for (const f of fragment(new Uint8Array([2, ...text('pay me')]), 0, link.mtu)) await link.send(f, false);
    await until(() => payee.transport.stats.unbound === 1 && heard.length === 1);
    // Mallory answers the challenge with her own signature but names the victim's address.
    const challenge = cbor.decode(heard[0]!.subarray(1)) as LinkMessage;
    const proof = new CentralHandshake(mallory, p.payee.address).receive(challenge)!;
    const forged = cbor.encode({ ...proof, from: victim.address });
    for (const f of fragment(new Uint8Array([1, ...forged]), 1, link.mtu)) await link.send(f, true);
    await until(() => closed);
    expect(payee.got).toEqual([]);
    expect(payee.transport.linked(victim.address)).toBe(false);
    expect(payee.transport.stats.refusedLinks).toBe(1);
  });

  it('closes a link that never finishes its handshake', async () => {
    const p = pair();
    const payee = await p.startPayee();
    let closed = false;
    await p.radio.central(Signer.random().address).connect(p.payee.address, { packet: () => {}, closed: () => (closed = true) }, 500);
    await until(() => closed);
    expect(payee.transport.stats.refusedLinks).toBe(1);
    expect(p.radio.links).toBe(0);
  });

  it('survives garbage, oversize announcements and lost, repeated and cut fragments: only whole frames arrive', async () => {
    const p = pair(new MemoryRadio({ mtu: 23, seed: 7 }));
    const payee = await p.startPayee();
    const payer = await p.startPayer();
    payer.transport.watchPeer(p.payee.address);
    await until(() => payer.transport.linked(p.payee.address));
    p.radio.faults = { drop: 0.1, duplicate: 0.1, truncate: 0.1 };
    const sent = Array.from({ length: 60 }, (_, i) => `frame ${i} ${'y'.repeat(i * 3)}`);
    for (const s of sent) await payer.transport.send(p.payee.address, text(s));
    await until(() => payee.transport.stats.badFragments > 0 && payee.got.length > 0);
    await payer.transport.send(p.payee.address, text('last'));
    p.radio.faults = {};
    await payer.transport.send(p.payee.address, text('clean'));
    await until(() => payee.got.some(([, s]) => s === 'clean'));
    // Whatever arrived is exactly something that was sent: no spliced or truncated frame.
    for (const [, s] of payee.got) expect([...sent, 'last', 'clean']).toContain(s);
    expect(payee.transport.linked(p.payer.address)).toBe(true);
  });

  it('refuses centrals beyond its limit, so a flood of links cannot grow memory', async () => {
    const radio = new MemoryRadio();
    const payee = Signer.random();
    const t = await start({ signer: payee, peripheral: { backend: radio.peripheral(payee.address), name: 'kiosk' }, maxLinks: 3 });
    for (let i = 0; i < 10; i++) await radio.central(Signer.random().address).connect(payee.address, { packet: () => {}, closed: () => {} }, 500);
    await until(() => radio.links <= 3);
    expect(t.transport.stats.refusedLinks).toBeGreaterThanOrEqual(7);
  });

  it('closes a link that goes silent (a dead peer btvirt never reports), then reconnects when the peer is back', async () => {
    const p = pair();
    const payee = await p.startPayee();
    const payer = await p.startPayer();
    payer.transport.watchPeer(p.payee.address);
    await until(() => payer.transport.linked(p.payee.address));
    p.radio.silence(p.payee.address);
    // Its probe closes the link; the payer's dialer links again (the payee's own probe, or the new link, retires its end).
    await until(() => payer.transport.stats.silentLinks === 1);
    const peer = p.payee.address.toLowerCase();
    await until(() => payer.presence.length === 3);
    expect(payer.presence).toEqual([`up ${peer}`, `down ${peer}`, `up ${peer}`]);
    // The payee restarts: a fresh peripheral with the same key; the payer's dialer finds it.
    await payee.transport.close();
    await until(() => !payer.transport.linked(p.payee.address));
    const again = await p.startPayee();
    await until(() => payer.transport.linked(p.payee.address));
    await payer.transport.send(p.payee.address, text('after restart'));
    await until(() => again.got.length === 1);
    expect(again.got[0]![1]).toBe('after restart');
  });

  it('replaces the link of a central that restarted unseen with its new one, without a spurious peerDown', async () => {
    const p = pair();
    // A slow probe: the new link, not the probe, must retire the old one.
    const payee = await p.startPayee({ probeMs: 60_000 });
    const payer = await p.startPayer();
    payer.transport.watchPeer(p.payee.address);
    await until(() => payee.transport.linked(p.payer.address));
    // The payer's process dies and the payee is never told (no supervision timeout under btvirt).
    p.radio.silence(p.payer.address);
    await payer.transport.close();
    const restarted = await p.startPayer();
    restarted.transport.watchPeer(p.payee.address);
    await until(() => restarted.transport.linked(p.payee.address));
    await payee.transport.send(p.payer.address, text('to the new link'));
    await until(() => restarted.got.length === 1);
    expect(payee.presence).toEqual([`up ${p.payer.address.toLowerCase()}`]);
  });

  it('needs a backend', async () => {
    await expect(BleTransport.start({ signer: Signer.random() })).rejects.toThrow(TransportError);
  });

  it('one in the middle who passed the handshake on unchanged (holding neither key) cannot put a frame of its own on the link', async () => {
    const far = new MemoryRadio(); // where the real payee is
    const near = new MemoryRadio(); // where the payer is, with mallory's look-alike advert
    const p = pair(far);
    const payee = await p.startPayee();
    const mallory = Signer.random();
    let toPayee: BleLink | undefined;
    const pending: Uint8Array[] = [];
    await near.peripheral(mallory.address, p.payee.address).start({ address: p.payee.address, name: 'kiosk', price: 0n }, (toPayer): LinkEvents => {
      void far
        .central(mallory.address)
        .connect(p.payee.address, { packet: (d) => void toPayer.send(d, true).catch(() => {}), closed: () => void toPayer.close() }, 500)
        .then((l) => {
          toPayee = l;
          for (const d of pending.splice(0)) void l.send(d, true);
        });
      return { packet: (d) => (toPayee ? void toPayee.send(d, true).catch(() => {}) : void pending.push(d)), closed: () => void toPayee?.close() };
    });
    const payer = await start({ signer: p.payer, central: near.central(p.payer.address) });
    payer.transport.watchPeer(p.payee.address);
    await until(() => payer.transport.linked(p.payee.address) && payee.transport.linked(p.payer.address));
    // The relayed link works for what the payer really sends...
    await payer.transport.send(p.payee.address, text('from the payer'));
    await until(() => payee.got.length === 1);
    // ...but a frame mallory writes herself, even with a counter that looks right, is refused.
    for (const f of fragment(new Uint8Array([2, 0, 0, 0, 9, ...text('injected'), ...new Uint8Array(16)]), 40, toPayee!.mtu)) await toPayee!.send(f, false);
    await until(() => payee.transport.stats.forged === 1);
    expect(payee.got).toEqual([[p.payer.address.toLowerCase(), 'from the payer']]);
  });

  it('keys made by the dozen that bind and stay cannot lock out a peer the payee has a channel with', async () => {
    const radio = new MemoryRadio();
    const payee = Signer.random();
    const honest = Signer.random();
    const p = await start({ signer: payee, peripheral: { backend: radio.peripheral(payee.address), name: 'kiosk' }, maxLinks: 4 });
    p.transport.keepLinks((peer) => peer === honest.address.toLowerCase());
    const sybils = await Promise.all(Array.from({ length: 4 }, () => Signer.random()).map((s) => start({ signer: s, central: radio.central(s.address) })));
    for (const s of sybils) s.transport.watchPeer(payee.address);
    await until(() => sybils.every((s) => s.transport.linked(payee.address)));
    const h = await start({ signer: honest, central: radio.central(honest.address) });
    h.transport.watchPeer(payee.address);
    await until(() => h.transport.linked(payee.address));
    // The sybils go on evicting one another; the kept peer's link stays.
    await until(() => p.transport.stats.refusedLinks >= 8);
    expect(h.presence).toEqual([`up ${payee.address.toLowerCase()}`]);
  });

  it('takes a link whose MTU leaves less than BLE\'s minimum (a backend keeping a byte of each packet) without throwing', async () => {
    let accept: ((link: BleLink) => LinkEvents) | undefined;
    await start({ signer: Signer.random(), peripheral: { backend: { start: async (_a, a) => void (accept = a), stop: async () => {} }, name: 'kiosk' } });
    expect(() => accept!({ mtu: 22, send: async () => {}, close: async () => {} })).not.toThrow();
  });

  it('an injected handshake message on a bound link (it needs no key) is refused as forged and does not close the link', async () => {
    const p = pair();
    const payee = await p.startPayee();
    const inner = p.radio.central(p.payer.address);
    let raw: BleLink | undefined;
    const payer = await start({ signer: p.payer, central: { ...inner, connect: async (peer, events, ms) => (raw = await inner.connect(peer, events, ms)) } });
    payer.transport.watchPeer(p.payee.address);
    await until(() => payee.transport.linked(p.payer.address) && payer.transport.linked(p.payee.address));
    for (const f of fragment(new Uint8Array([1, 0xa0]), 77, raw!.mtu)) await raw!.send(f, false);
    await until(() => payee.transport.stats.forged === 1);
    await payer.transport.send(p.payee.address, text('still linked'));
    await until(() => payee.got.length === 1);
    expect(payee.presence).toEqual([`up ${p.payer.address.toLowerCase()}`]);
  });
});
