import { utf8ToBytes } from '@noble/hashes/utils.js';
import { Encoder } from 'cbor-x';
import type { Signer } from '../crypto/keys.ts';
import { recoverAddress } from '../crypto/verify.ts';
import { MalformedMessageError, WrongPeerError } from '../errors.ts';
import { fromHex, keccak, toHex } from '../model/hash.ts';
import type { Address } from '../model/types.ts';
import type { Transport, TransportHandler } from './types.ts';
import { lower as key } from './address.ts';

// A device with no internet reaches its gateway through a nearby peer that has it. The
// device seals each frame for the gateway in an envelope it signs (from, to, the relay it
// chose, when, the frame); that peer passes the envelope on between BLE and MQTT as it
// is; the gateway opens it, takes the frame as from the device and answers the same way,
// through the same relay. A relaying peer can delay, drop or repeat envelopes (the
// protocol copes with all three), never forge one, and no one else can carry them: the
// signature names the relay, which must be the broker identity that hands it over. An
// envelope starts with a zero byte, which no wire message does (they are CBOR arrays).

const RELAY = 0x00;
const PREFIX = utf8ToBytes('picopay-relay:v2:');
/** An envelope older or newer than this is refused, on either side. */
export const RELAY_WINDOW_MS = 5 * 60_000;
/** A device heard through a relay for no longer than this counts as gone (its keepalives come every third of it). */
export const RELAY_STALE_MS = 60_000;
/** Routes one relaying peer may carry at once: a peer's own throwaway keys evict only its own. */
const ROUTES_PER_RELAY = 64;

const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false });

export interface Envelope {
  from: Address;
  to: Address;
  /** The relaying peer the sender chose. */
  via: Address;
  /** The sender's clock, in ms. */
  at: number;
  /** Empty: a keepalive, which only refreshes the route. */
  frame: Uint8Array;
}

function digest(from: Uint8Array, to: Uint8Array, via: Uint8Array, at: number, frame: Uint8Array): Uint8Array {
  const data = new Uint8Array(PREFIX.length + 60 + 8 + 32);
  data.set(PREFIX);
  data.set(from, PREFIX.length);
  data.set(to, PREFIX.length + 20);
  data.set(via, PREFIX.length + 40);
  new DataView(data.buffer).setBigUint64(PREFIX.length + 60, BigInt(at));
  data.set(keccak(frame), PREFIX.length + 68);
  return keccak(data);
}

export function isEnvelope(frame: Uint8Array): boolean {
  return frame.length > 0 && frame[0] === RELAY;
}

/** `frame` for `to`, to be carried by `via`, sealed by `signer`. */
export function seal(signer: Signer, to: Address, via: Address, frame: Uint8Array, at = Date.now()): Uint8Array {
  const [f, t, v] = [fromHex(signer.address), fromHex(to), fromHex(via)];
  const body = cbor.encode([f, t, v, at, frame, signer.sign(digest(f, t, v, at, frame))]);
  const out = new Uint8Array(body.length + 1);
  out[0] = RELAY;
  out.set(body, 1);
  return out;
}

/** The envelope's content, once its signature proves its sender; throws for anything else. */
export function open(bytes: Uint8Array): Envelope {
  if (!isEnvelope(bytes)) throw new MalformedMessageError('not a relay envelope');
  let fields: unknown;
  try {
    fields = cbor.decode(bytes.subarray(1));
  } catch {
    throw new MalformedMessageError('a relay envelope that is not CBOR');
  }
  if (!Array.isArray(fields) || fields.length !== 6) throw new MalformedMessageError('a relay envelope of the wrong shape');
  const [from, to, via, at, frame, sig] = fields as unknown[];
  const isBytes = (b: unknown, n?: number): b is Uint8Array => b instanceof Uint8Array && (n === undefined || b.length === n);
  if (!isBytes(from, 20) || !isBytes(to, 20) || !isBytes(via, 20) || !isBytes(frame) || !isBytes(sig, 65) || !Number.isSafeInteger(at) || (at as number) < 0) {
    throw new MalformedMessageError('a relay envelope of the wrong shape');
  }
  const sender = toHex(from) as Address;
  if (recoverAddress(sig, digest(from, to, via, at as number, frame)) !== sender) throw new WrongPeerError('a relay envelope its sender did not sign');
  return { from: sender, to: toHex(to) as Address, via: toHex(via) as Address, at: at as number, frame: new Uint8Array(frame) };
}


/** An envelope for `self`, carried by `carrier`, within the time window: its frame; throws for anything else. */
function accept(bytes: Uint8Array, self: Address, carrier: Address, now: number): Envelope {
  const env = open(bytes);
  if (env.to !== self) throw new WrongPeerError('a relay envelope for someone else');
  if (env.via !== key(carrier)) throw new WrongPeerError('a relay envelope handed over by another than the relay it names');
  if (Math.abs(now - env.at) > RELAY_WINDOW_MS) throw new WrongPeerError('a relay envelope outside the time window');
  return env;
}

/**
 * The device's side: every frame goes over `near` to the peer `via`, sealed unless it is
 * for `via` itself; envelopes coming back are opened and handed on as from their sender.
 * With `keepalive`, an empty envelope goes to that peer (the gateway) every third of
 * RELAY_STALE_MS, so that it does not count this device as gone while it is idle.
 */
export class RelayClient implements Transport {
  readonly self: Address;
  #handler: TransportHandler | undefined;
  readonly #keepalive: NodeJS.Timeout | undefined;

  constructor(
    private readonly near: Transport & { watchPeer(peer: Address): void },
    private readonly via: Address,
    private readonly signer: Signer,
    options: { keepalive?: Address; onRefused?: (err: unknown) => void } = {},
  ) {
    this.self = key(signer.address);
    near.setHandler({
      message: (from, frame) => {
        if (!isEnvelope(frame)) return this.#handler?.message(from, frame);
        try {
          const env = accept(frame, this.self, from, Date.now());
          if (env.frame.length > 0) this.#handler?.message(env.from, env.frame);
        } catch (err) {
          options.onRefused?.(err);
        }
      },
      connected: () => this.#handler?.connected?.(),
      peerUp: (peer) => this.#handler?.peerUp?.(peer),
      peerDown: (peer) => this.#handler?.peerDown?.(peer),
    });
    near.watchPeer(via);
    const to = options.keepalive;
    if (to) this.#keepalive = setInterval(() => void this.send(to, new Uint8Array(0)).catch(() => {}), RELAY_STALE_MS / 3).unref();
  }

  send(to: Address, frame: Uint8Array): Promise<void> {
    return key(to) === key(this.via) ? this.near.send(to, frame) : this.near.send(this.via, seal(this.signer, to, this.via, frame));
  }

  setHandler(handler: TransportHandler): void {
    this.#handler = handler;
  }

  close(): Promise<void> {
    clearInterval(this.#keepalive);
    return this.near.close();
  }
}

/**
 * The relaying peer's side, around its two links. It carries only envelopes that name it
 * as their relay and come from their sealer: from a device linked on `near` over `far` to
 * the recipient, and from `far` to a device linked on `near`. The rest of the traffic
 * reaches the handler as usual.
 */
export function relaying(transport: Transport, near: { linked(peer: Address): boolean; send(to: Address, frame: Uint8Array): Promise<void> }, far: Transport, onRefused: (err: unknown) => void = () => {}): Transport {
  const self = key(transport.self);
  let handler: TransportHandler | undefined;
  const pass = (from: Address, bytes: Uint8Array) => {
    const env = open(bytes);
    if (env.via !== self || env.from !== key(from)) throw new WrongPeerError('a relay envelope this peer is not named to carry for its sender');
    if (near.linked(from)) return void far.send(env.to, bytes).catch(onRefused);
    if (near.linked(env.to)) return void near.send(env.to, bytes).catch(onRefused);
    throw new WrongPeerError(`no link to ${env.to} to relay to`);
  };
  transport.setHandler({
    message: (from, frame) => {
      if (!isEnvelope(frame)) return handler?.message(from, frame);
      try {
        pass(from, frame);
      } catch (err) {
        onRefused(err);
      }
    },
    connected: () => handler?.connected?.(),
    peerUp: (peer) => handler?.peerUp?.(peer),
    peerDown: (peer) => handler?.peerDown?.(peer),
  });
  return {
    self: transport.self,
    send: (to, frame) => transport.send(to, frame),
    setHandler: (h) => void (handler = h),
    watchPeer: (peer) => transport.watchPeer?.(peer),
    close: () => transport.close(),
  };
}

interface Route {
  via: Address;
  /** The newest envelope's time: the route moves only for a newer one. */
  at: number;
  heardAt: number;
}

export interface RelayAwareOptions {
  maxRoutes?: number;
  onRefused?: (err: unknown) => void;
  now?: () => number;
  /** How often routes gone stale are looked for (default a tenth of RELAY_STALE_MS). */
  sweepMs?: number;
}

/**
 * The gateway's side: opens envelopes a relaying peer hands over, takes their frames as
 * from their sealer, and answers a device heard through a relay both directly (its broker
 * session keeps it) and sealed through that relay. A device heard only through a relay is
 * reported offline when it has not been heard for RELAY_STALE_MS, so that the gateway's
 * offline protection covers it as any other; while it is heard, the broker's `offline`
 * for it is not passed on.
 */
export class RelayAware implements Transport {
  readonly self: Address;
  readonly #routes = new Map<Address, Route>();
  readonly #perRelay = new Map<Address, number>();
  /** Devices the broker says are online. */
  readonly #online = new Set<Address>();
  readonly #downReported = new Set<Address>();
  /** Watched peers, since when: one heard from neither the broker nor a relay by RELAY_STALE_MS after is offline (a restart forgets routes). */
  readonly #watched = new Map<Address, number>();
  readonly #sweep: NodeJS.Timeout;
  #handler: TransportHandler | undefined;

  constructor(
    private readonly inner: Transport,
    private readonly signer: Signer,
    private readonly options: RelayAwareOptions = {},
  ) {
    this.self = key(inner.self);
    inner.setHandler({
      message: (from, frame) => (isEnvelope(frame) ? this.#relayed(from, frame) : this.#handler?.message(from, frame)),
      connected: () => this.#handler?.connected?.(),
      peerUp: (peer) => {
        this.#online.add(key(peer));
        this.#downReported.delete(key(peer));
        this.#handler?.peerUp?.(peer);
      },
      peerDown: (peer) => {
        this.#online.delete(key(peer));
        if (this.#fresh(key(peer))) return;
        this.#downReported.add(key(peer));
        this.#handler?.peerDown?.(peer);
      },
    });
    this.#sweep = setInterval(() => this.#expire(), options.sweepMs ?? RELAY_STALE_MS / 10).unref();
  }

  async send(to: Address, frame: Uint8Array): Promise<void> {
    const route = this.#fresh(key(to));
    const direct = this.inner.send(to, frame);
    if (!route) return direct;
    await Promise.allSettled([direct, this.inner.send(route.via, seal(this.signer, to, route.via, frame))]);
  }

  setHandler(handler: TransportHandler): void {
    this.#handler = handler;
  }

  watchPeer(peer: Address): void {
    if (!this.#watched.has(key(peer))) this.#watched.set(key(peer), this.#now());
    this.inner.watchPeer?.(peer);
  }

  close(): Promise<void> {
    clearInterval(this.#sweep);
    return this.inner.close();
  }

  #now(): number {
    return this.options.now?.() ?? Date.now();
  }

  #fresh(peer: Address): Route | undefined {
    const route = this.#routes.get(peer);
    return route && this.#now() - route.heardAt < RELAY_STALE_MS ? route : undefined;
  }

  /**
   * Routes gone stale leave, and a device reached only through one is now offline; so is a
   * watched one heard from neither side since it was watched (a relayed device that
   * vanished while the gateway was down is heard of by nobody after its restart).
   */
  #expire(): void {
    const now = this.#now();
    for (const [peer, route] of this.#routes) {
      if (now - route.heardAt < RELAY_STALE_MS) continue;
      this.#forget(peer, route);
      this.#reportDown(peer);
    }
    for (const [peer, since] of this.#watched) if (now - since >= RELAY_STALE_MS && !this.#routes.has(peer)) this.#reportDown(peer);
  }

  #reportDown(peer: Address): void {
    if (this.#online.has(peer) || this.#downReported.has(peer)) return;
    this.#downReported.add(peer);
    this.#handler?.peerDown?.(peer);
  }

  #forget(peer: Address, route: Route): void {
    this.#routes.delete(peer);
    const n = (this.#perRelay.get(route.via) ?? 1) - 1;
    if (n > 0) this.#perRelay.set(route.via, n);
    else this.#perRelay.delete(route.via);
  }

  #relayed(via: Address, bytes: Uint8Array): void {
    let env: Envelope;
    try {
      env = accept(bytes, this.self, via, this.#now());
    } catch (err) {
      this.options.onRefused?.(err);
      return;
    }
    const route = this.#routes.get(env.from);
    if (route && env.at > route.at) this.#forget(env.from, route);
    if (!route || env.at > route.at) this.#route(env.from, { via: env.via, at: env.at, heardAt: this.#now() });
    else if (route.via === env.via) route.heardAt = this.#now();
    if (this.#downReported.delete(env.from)) this.#handler?.peerUp?.(env.from);
    if (env.frame.length > 0) this.#handler?.message(env.from, env.frame);
  }

  /** Adds a route within the bounds: a relay at its share loses its own oldest; the whole map its oldest. */
  #route(peer: Address, route: Route): void {
    if ((this.#perRelay.get(route.via) ?? 0) >= ROUTES_PER_RELAY) {
      const oldest = [...this.#routes].find(([, r]) => r.via === route.via);
      if (oldest) this.#forget(oldest[0], oldest[1]);
    }
    if (this.#routes.size >= (this.options.maxRoutes ?? 10_000)) {
      const [first, r] = this.#routes.entries().next().value!;
      this.#forget(first, r);
    }
    this.#routes.set(peer, route);
    this.#perRelay.set(route.via, (this.#perRelay.get(route.via) ?? 0) + 1);
  }
}
