import { Encoder } from 'cbor-x';
import type { Signer } from '../../crypto/keys.ts';
import { MalformedMessageError, TransportError } from '../../errors.ts';
import type { Address } from '../../model/types.ts';
import { MAX_MESSAGE_BYTES } from '../../wire/messages.ts';
import { Backoff } from '../backoff.ts';
import { silentLogger, type TransportLogger } from '../log.ts';
import type { Transport, TransportHandler } from '../types.ts';
import { fragment, Reassembler } from './framing.ts';
import { CentralHandshake, type LinkMessage, PeripheralHandshake } from './handshake.ts';
import type { Advert, BleLink, CentralBackend, LinkEvents, PeripheralBackend } from './link.ts';
import { SEAL_BYTES, Session } from './session.ts';
import { lower as key } from '../address.ts';

// The Transport over BLE links. Every message on a link starts with one byte saying what
// it is: the link handshake (handshake.ts), a frame for the agent, or a liveness probe and
// its answer. No frame counts as coming from anyone until the handshake has bound the
// link to the peer's key, so `from` is always the proven address. Frames go as write
// commands (the protocol retransmits what is lost); the handshake and probes as writes
// with response. A link that stays silent past a probe is closed, and a central keeps
// reconnecting to the peers it was asked for, with backoff.

const HANDSHAKE = 1;
const FRAME = 2;
const PING = 3;
const PONG = 4;
/** A central's redials: 250 ms doubling to 10 s. */
const REDIAL = { initialMs: 250, maxMs: 10_000 };
/** Packets a central holds for a link whose connect() has not returned yet. */
const EARLY_PACKETS = 8;

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

export interface BleTransportOptions {
  signer: Signer;
  /** Accept centrals (a payee): the backend advertises `name` with this device's address. */
  peripheral?: { backend: PeripheralBackend; name: string; price?: bigint };
  /** Connect to payees (a payer). */
  central?: CentralBackend;
  /** Largest message accepted or sent (default the wire's limit). */
  maxFrameBytes?: number;
  /** A link not bound by then is closed (default 10 s). */
  handshakeTimeoutMs?: number;
  /** A link silent this long is probed, and closed if still silent as long again (default 5 s). */
  probeMs?: number;
  /** Time allowed for one connection attempt (default 20 s). */
  connectTimeoutMs?: number;
  /** Frames queued per link before send() refuses (default 256). */
  maxQueuedSends?: number;
  /** Links held at once, bound or not (default 16): a flood of centrals cannot grow memory. */
  maxLinks?: number;
  /** Where a handler that threw is reported (the transport carries on). */
  logger?: TransportLogger;
}

/** What the transport has refused, for tests and the status page. */
export interface BleStats {
  /** Frames that arrived on a link not yet bound (dropped). */
  unbound: number;
  /** Fragments that did not reassemble (lost, repeated, cut short, too large). */
  badFragments: number;
  /** Links closed because their handshake failed or timed out. */
  refusedLinks: number;
  /** Links closed because they went silent. */
  silentLinks: number;
  /** Messages on a bound link that its session did not authenticate (injected, replayed, changed). */
  forged: number;
}

export class BleTransport implements Transport {
  readonly self: Address;
  readonly stats: BleStats = { unbound: 0, badFragments: 0, refusedLinks: 0, silentLinks: 0, forged: 0 };
  readonly #options: Required<Omit<BleTransportOptions, 'peripheral' | 'central' | 'logger'>>;
  readonly #log: TransportLogger;
  readonly #peripheral: BleTransportOptions['peripheral'];
  readonly #central: CentralBackend | undefined;
  /** Bound links by peer (the newest wins). */
  readonly #bound = new Map<Address, Link>();
  readonly #links = new Set<Link>();
  /** Peers a central keeps a link to. */
  readonly #wanted = new Set<Address>();
  readonly #dialing = new Set<Address>();
  #handler: TransportHandler | undefined;
  #keep: (peer: Address) => boolean = () => false;
  #closed = false;

  private constructor(options: BleTransportOptions) {
    this.self = key(options.signer.address);
    this.#peripheral = options.peripheral;
    this.#central = options.central;
    this.#log = options.logger ?? silentLogger;
    this.#options = {
      signer: options.signer,
      maxFrameBytes: options.maxFrameBytes ?? MAX_MESSAGE_BYTES,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      probeMs: options.probeMs ?? 5_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 20_000,
      maxQueuedSends: options.maxQueuedSends ?? 256,
      maxLinks: options.maxLinks ?? 16,
    };
  }

  /** A BLE transport; a peripheral starts advertising before this resolves. */
  static async start(options: BleTransportOptions): Promise<BleTransport> {
    if (!options.peripheral && !options.central) throw new TransportError('a BLE transport needs a peripheral or a central backend');
    const transport = new BleTransport(options);
    if (options.peripheral) {
      const advert: Advert = { address: transport.self, name: options.peripheral.name, price: options.peripheral.price ?? 0n };
      await options.peripheral.backend.start(advert, (link) => transport.#accept(link));
    }
    return transport;
  }

  /** Whether a bound link to `peer` is up now. */
  linked(peer: Address): boolean {
    return this.#bound.has(key(peer));
  }

  /** The ATT MTU of the bound link to `peer`, if one is up. */
  mtu(peer: Address): number | undefined {
    return this.#bound.get(key(peer))?.mtu;
  }

  async send(to: Address, frame: Uint8Array): Promise<void> {
    if (this.#closed) throw new TransportError('the BLE transport is closed');
    if (frame.length > this.#options.maxFrameBytes) throw new TransportError(`frame of ${frame.length} bytes exceeds the limit of ${this.#options.maxFrameBytes}`);
    const link = this.#bound.get(key(to));
    if (!link) {
      this.#want(key(to));
      throw new TransportError(`no BLE link to ${to}`);
    }
    return link.send(FRAME, frame, false);
  }

  setHandler(handler: TransportHandler): void {
    this.#handler = handler;
  }

  /** Which peers' links are never evicted to make room (the agent's: those it has a channel with). */
  keepLinks(keep: (peer: Address) => boolean): void {
    this.#keep = keep;
  }

  /** A central keeps a link to a watched peer, reconnecting whenever it drops. */
  watchPeer(peer: Address): void {
    this.#want(key(peer));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wanted.clear();
    await Promise.allSettled([...this.#links].map((link) => link.close()));
    await Promise.allSettled([this.#peripheral?.backend.stop(), this.#central?.stop()]);
  }

  #accept(link: BleLink): LinkEvents {
    const handshake = new PeripheralHandshake(this.#options.signer);
    // Full: the newcomer takes the place of the least active bound link of a peer not kept
    // (see keepLinks), else of the oldest handshake: keys made by the dozen cannot lock out
    // a peer this device has a channel with, nor a flood of handshakes a newcomer.
    if (this.#links.size >= this.#options.maxLinks) {
      const links = [...this.#links];
      const bound = links.filter((l) => l.peer && !this.#keep(l.peer));
      const evicted = bound.length > 0 ? bound.reduce((a, b) => (a.active <= b.active ? a : b)) : links.find((l) => !l.peer);
      this.stats.refusedLinks++;
      if (evicted) void evicted.close();
    }
    const state = this.#open(link, { handshake, role: 'peripheral' });
    void state.send(HANDSHAKE, cbor.encode(handshake.start()), true).catch(() => state.close());
    return state.events;
  }

  #open(link: BleLink, binding: Binding): Link {
    const state = new Link(link, this.#options.maxFrameBytes, this.#options.maxQueuedSends, {
      message: (type, body) => this.#message(state, binding, type, body),
      badFragment: () => this.stats.badFragments++,
      unbound: () => this.stats.unbound++,
      forged: () => this.stats.forged++,
      closed: () => this.#dropped(state),
    });
    this.#links.add(state);
    state.deadline(this.#options.handshakeTimeoutMs, () => {
      this.stats.refusedLinks++;
      void state.close();
    });
    return state;
  }

  #message(link: Link, binding: Binding, type: number, body: Uint8Array): void {
    switch (type) {
      case HANDSHAKE:
        return this.#handshake(link, binding, body);
      case FRAME:
        return this.#call('message', () => this.#handler?.message(link.peer!, body));
      case PING:
        void link.send(PONG, new Uint8Array(0), true).catch(() => link.close());
        return;
      case PONG:
        return;
      default:
        this.stats.badFragments++;
    }
  }

  #handshake(link: Link, binding: Binding, body: Uint8Array): void {
    let answer: LinkMessage | null;
    try {
      answer = binding.handshake.receive(decodeLinkMessage(body));
    } catch {
      // A wrong key, a replayed or malformed proof: this link never carries a frame.
      this.stats.refusedLinks++;
      void link.close();
      return;
    }
    if (answer) void link.send(HANDSHAKE, cbor.encode(answer), true).catch(() => link.close());
    const { peer, session } = binding.handshake;
    if (peer && session && !link.peer) this.#bind(link, key(peer), new Session(session, binding.role));
  }

  #bind(link: Link, peer: Address, session: Session): void {
    link.bind(peer, session);
    link.watch(this.#options.probeMs, () => {
      this.stats.silentLinks++;
      void link.close();
    });
    const old = this.#bound.get(peer);
    this.#bound.set(peer, link);
    if (old) void old.close();
    else this.#call('peerUp', () => this.#handler?.peerUp?.(peer));
    // A new link is the moment to resynchronise: frames sent while it was down were lost.
    this.#call('connected', () => this.#handler?.connected?.());
  }

  #dropped(link: Link): void {
    this.#links.delete(link);
    const peer = link.peer;
    if (!peer || this.#bound.get(peer) !== link) return;
    this.#bound.delete(peer);
    this.#call('peerDown', () => this.#handler?.peerDown?.(peer));
    if (this.#wanted.has(peer)) this.#dial(peer);
  }

  /** The agent's callbacks run under the radio's or D-Bus's events: one that throws is reported, not thrown into them. */
  #call(event: string, call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#log.warn({ err, event }, 'transport handler threw');
    }
  }

  #want(peer: Address): void {
    if (!this.#central || this.#closed) return;
    this.#wanted.add(peer);
    if (!this.#bound.has(peer)) this.#dial(peer);
  }

  /** Connects to `peer` until a link to it is bound, with backoff; one dialer per peer. */
  #dial(peer: Address): void {
    const central = this.#central;
    if (!central || this.#dialing.has(peer)) return;
    this.#dialing.add(peer);
    const backoff = new Backoff(REDIAL);
    const attempt = async (): Promise<void> => {
      while (!this.#closed && this.#wanted.has(peer) && !this.#bound.has(peer)) {
        const bound = await this.#connectOnce(central, peer).catch(() => false);
        if (bound) return;
        await new Promise((resolve) => setTimeout(resolve, backoff.next()).unref());
      }
    };
    void attempt().finally(() => this.#dialing.delete(peer));
  }

  /** One connection and handshake; true once the link is bound to `peer`. */
  async #connectOnce(central: CentralBackend, peer: Address): Promise<boolean> {
    const handshake = new CentralHandshake(this.#options.signer, peer);
    // The peripheral may speak before connect() returns: hold those packets (a few) until the link's state exists.
    let state: Link | undefined;
    const early: Uint8Array[] = [];
    let closedEarly = false;
    const events: LinkEvents = {
      packet: (data) => (state ? state.events.packet(data) : early.length < EARLY_PACKETS && early.push(data)),
      closed: () => (state ? state.events.closed() : (closedEarly = true)),
    };
    const link = await central.connect(peer, events, this.#options.connectTimeoutMs);
    if (this.#closed || closedEarly) {
      await link.close();
      return false;
    }
    state = this.#open(link, { handshake, role: 'central' });
    for (const data of early) state.events.packet(data);
    const bound = await state.bound();
    // Not the key it advertised (or it never answered): the backend looks elsewhere next time.
    if (!bound && handshake.peer === null) central.refused?.(peer);
    return bound;
  }
}

/** A link's side of the handshake, with the role it plays. */
type Binding = { handshake: PeripheralHandshake; role: 'peripheral' } | { handshake: CentralHandshake; role: 'central' };

interface LinkCallbacks {
  /** A handshake message, or an authenticated one once bound. */
  message(type: number, body: Uint8Array): void;
  badFragment(): void;
  /** A message other than the handshake before the link is bound. */
  unbound(): void;
  /** A message on a bound link that the session did not authenticate. */
  forged(): void;
  closed(): void;
}

/** One link's state: reassembly, ordered sends, deadlines and the liveness probe. */
class Link {
  peer: Address | null = null;
  readonly events: LinkEvents;
  readonly #link: BleLink;
  readonly #reassembler: Reassembler;
  readonly #maxQueued: number;
  readonly #callbacks: LinkCallbacks;
  #sequence = 0;
  #queued = 0;
  #tail: Promise<void> = Promise.resolve();
  #heard = Date.now();
  #active = Date.now();
  #session: Session | null = null;
  #deadline: NodeJS.Timeout | undefined;
  #probe: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #waiters: ((bound: boolean) => void)[] = [];

  constructor(link: BleLink, maxFrameBytes: number, maxQueued: number, callbacks: LinkCallbacks) {
    this.#link = link;
    this.#maxQueued = maxQueued;
    this.#callbacks = callbacks;
    // One byte of type ahead of every message, and the session's counter and tag.
    this.#reassembler = new Reassembler(maxFrameBytes + 1 + SEAL_BYTES, () => callbacks.badFragment());
    this.events = {
      packet: (data) => this.#packet(data),
      closed: () => this.#gone(),
    };
  }

  get mtu(): number {
    return this.#link.mtu;
  }

  /** When a frame for the agent last came in (probes do not count): a newcomer evicts the least active link. */
  get active(): number {
    return this.#active;
  }

  /** Resolves true once bound, false if the link closes first. */
  bound(): Promise<boolean> {
    if (this.peer) return Promise.resolve(true);
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Runs `expire` after `ms` unless the link is bound first. */
  deadline(ms: number, expire: () => void): void {
    this.#deadline = setTimeout(expire, ms).unref();
  }

  bind(peer: Address, session: Session): void {
    this.peer = peer;
    this.#session = session;
    clearTimeout(this.#deadline);
    this.#settle(true);
  }

  /** Probes the peer after `ms` of silence and calls `silent` when a probe goes unanswered as long again. */
  watch(ms: number, silent: () => void): void {
    let probing = false;
    this.#probe = setInterval(() => {
      const quiet = Date.now() - this.#heard;
      if (quiet < ms) {
        probing = false;
        return;
      }
      if (probing && quiet >= 2 * ms) return silent();
      if (!probing) {
        probing = true;
        this.send(PING, new Uint8Array(0), true).catch(() => silent());
      }
    }, Math.max(10, Math.floor(ms / 2))).unref();
  }

  /** Queues one message; its fragments go out in order, after those queued before. */
  send(type: number, body: Uint8Array, reliable: boolean): Promise<void> {
    if (this.#closed) return Promise.reject(new TransportError('the BLE link is closed'));
    if (this.#queued >= this.#maxQueued) return Promise.reject(new TransportError(`${this.#queued} frames already queued on the BLE link`));
    // Only the handshake goes unsealed; everything after it is the session's.
    const sealed = type === HANDSHAKE ? body : this.#session?.seal(type, body);
    if (!sealed) return Promise.reject(new TransportError('the BLE link is not bound, or its session is spent'));
    const message = new Uint8Array(sealed.length + 1);
    message[0] = type;
    message.set(sealed, 1);
    let packets: Uint8Array[];
    try {
      packets = fragment(message, this.#sequence++, this.#link.mtu);
    } catch (err) {
      return Promise.reject(new TransportError(`cannot send on this BLE link: ${(err as Error).message}`));
    }
    this.#queued++;
    const sent = this.#tail.then(async () => {
      for (const packet of packets) await this.#link.send(packet, reliable);
    });
    this.#tail = sent.catch(() => {}).finally(() => this.#queued--);
    return sent.catch((err: unknown) => {
      void this.close();
      throw err instanceof TransportError ? err : new TransportError(`BLE send failed: ${(err as Error).message}`);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#gone();
    await this.#link.close().catch(() => {});
  }

  #packet(data: Uint8Array): void {
    if (this.#closed) return;
    this.#heard = Date.now();
    let message: Uint8Array | null;
    try {
      message = this.#reassembler.push(data);
    } catch {
      this.#callbacks.badFragment();
      return;
    }
    if (!message || message.length === 0) return;
    const type = message[0]!;
    // The handshake is over once bound: one injected later (it needs no key) is noise, not a reason to close.
    if (type === HANDSHAKE) return this.#session ? this.#callbacks.forged() : this.#callbacks.message(type, message.subarray(1));
    if (!this.#session) return this.#callbacks.unbound();
    const body = this.#session.open(type, message.subarray(1));
    if (!body) return this.#callbacks.forged();
    if (type === FRAME) this.#active = Date.now();
    this.#callbacks.message(type, body);
  }

  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#deadline);
    clearInterval(this.#probe);
    this.#settle(false);
    this.#callbacks.closed();
  }

  #settle(bound: boolean): void {
    for (const resolve of this.#waiters.splice(0)) resolve(bound);
  }
}

function decodeLinkMessage(body: Uint8Array): LinkMessage {
  let msg: unknown;
  try {
    msg = cbor.decode(body);
  } catch {
    throw new MalformedMessageError('a handshake message that is not CBOR');
  }
  if (typeof msg !== 'object' || msg === null || !('t' in msg)) throw new MalformedMessageError('a handshake message without a type');
  return msg as LinkMessage;
}
