import { utf8ToBytes } from '@noble/hashes/utils.js';
import { Encoder } from 'cbor-x';
import type { Signer } from '../crypto/keys.ts';
import { recoverAddress } from '../crypto/verify.ts';
import { MalformedMessageError, WrongPeerError } from '../errors.ts';
import { fromHex, keccak, toHex } from '../model/hash.ts';
import type { Address } from '../model/types.ts';
import type { Transport, TransportHandler } from './types.ts';

// A device with no internet reaches its gateway through a nearby peer that has it. The
// device seals each frame for the gateway in an envelope it signs (from, to, when, the
// frame); the peer passes the envelope on between BLE and MQTT as it is; the gateway opens
// it and takes the frame as from the device, and answers the same way. A relaying peer can
// delay, drop or repeat envelopes (the protocol copes with all three), never forge one:
// the signature names sender and recipient. An envelope starts with a zero byte, which no
// wire message does (they are CBOR arrays).

const RELAY = 0x00;
const PREFIX = utf8ToBytes('picopay-relay:v1:');
/** An envelope older or newer than this is refused: a replay cannot move a route far back. */
export const RELAY_WINDOW_MS = 5 * 60_000;

const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false });

export interface Envelope {
  from: Address;
  to: Address;
  /** The sender's clock, in ms. */
  at: number;
  frame: Uint8Array;
}

function digest(from: Uint8Array, to: Uint8Array, at: number, frame: Uint8Array): Uint8Array {
  const data = new Uint8Array(PREFIX.length + 20 + 20 + 8 + 32);
  data.set(PREFIX);
  data.set(from, PREFIX.length);
  data.set(to, PREFIX.length + 20);
  new DataView(data.buffer).setBigUint64(PREFIX.length + 40, BigInt(at));
  data.set(keccak(frame), PREFIX.length + 48);
  return keccak(data);
}

export function isEnvelope(frame: Uint8Array): boolean {
  return frame.length > 0 && frame[0] === RELAY;
}

/** `frame` for `to`, sealed by `signer`. */
export function seal(signer: Signer, to: Address, frame: Uint8Array, at = Date.now()): Uint8Array {
  const [f, t] = [fromHex(signer.address), fromHex(to)];
  const body = cbor.encode([f, t, at, frame, signer.sign(digest(f, t, at, frame))]);
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
  if (!Array.isArray(fields) || fields.length !== 5) throw new MalformedMessageError('a relay envelope of the wrong shape');
  const [from, to, at, frame, sig] = fields as unknown[];
  const isBytes = (b: unknown, n?: number): b is Uint8Array => b instanceof Uint8Array && (n === undefined || b.length === n);
  if (!isBytes(from, 20) || !isBytes(to, 20) || !isBytes(frame) || !isBytes(sig, 65) || !Number.isSafeInteger(at) || (at as number) < 0) {
    throw new MalformedMessageError('a relay envelope of the wrong shape');
  }
  const sender = toHex(from) as Address;
  if (recoverAddress(sig, digest(from, to, at as number, frame)) !== sender) throw new WrongPeerError('a relay envelope its sender did not sign');
  return { from: sender, to: toHex(to) as Address, at: at as number, frame: new Uint8Array(frame) };
}

const key = (a: Address) => a.toLowerCase() as Address;

/**
 * The device's side: every frame goes over `near` to the peer `via`, sealed unless it is
 * for `via` itself; envelopes coming back are opened and handed on as from their sender.
 */
export class RelayClient implements Transport {
  readonly self: Address;
  #handler: TransportHandler | undefined;

  constructor(
    private readonly near: Transport & { watchPeer(peer: Address): void },
    private readonly via: Address,
    private readonly signer: Signer,
    onRefused: (err: unknown) => void = () => {},
  ) {
    this.self = key(signer.address);
    near.setHandler({
      message: (from, frame) => {
        if (!isEnvelope(frame)) return this.#handler?.message(from, frame);
        try {
          const env = open(frame);
          if (env.to !== this.self) throw new WrongPeerError('a relay envelope for someone else');
          this.#handler?.message(env.from, env.frame);
        } catch (err) {
          onRefused(err);
        }
      },
      connected: () => this.#handler?.connected?.(),
      peerUp: (peer) => this.#handler?.peerUp?.(peer),
      peerDown: (peer) => this.#handler?.peerDown?.(peer),
    });
    near.watchPeer(via);
  }

  send(to: Address, frame: Uint8Array): Promise<void> {
    return key(to) === key(this.via) ? this.near.send(to, frame) : this.near.send(this.via, seal(this.signer, to, frame));
  }

  setHandler(handler: TransportHandler): void {
    this.#handler = handler;
  }

  close(): Promise<void> {
    return this.near.close();
  }
}

/**
 * The relaying peer's side, around its two links: an envelope from a device linked on
 * `near` that it sealed itself goes on over `far` to its recipient, and one from `far` for a
 * device linked on `near` goes on to it. Envelopes for this device are opened; the rest of
 * the traffic reaches the handler as usual.
 */
export function relaying(transport: Transport, near: { linked(peer: Address): boolean; send(to: Address, frame: Uint8Array): Promise<void> }, far: Transport, onRefused: (err: unknown) => void = () => {}): Transport {
  const self = key(transport.self);
  let handler: TransportHandler | undefined;
  const pass = (from: Address, bytes: Uint8Array) => {
    const env = open(bytes);
    if (env.to === self) return handler?.message(env.from, env.frame);
    // From the BLE side: only a device's own envelopes (no laundering others' through it).
    if (near.linked(from) && env.from === key(from)) return void far.send(env.to, bytes).catch(onRefused);
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
  /** The newest envelope's time: an older one (a replay) does not move the route. */
  at: number;
  heardAt: number;
}

/**
 * The gateway's side: opens envelopes a relaying peer passes on, takes their frames as
 * from their sealer, and answers a device heard through a relay both directly (its broker
 * session keeps it) and sealed through the peer that relayed the newest envelope. While a
 * device is heard through a relay it is not reported offline.
 */
export class RelayAware implements Transport {
  readonly self: Address;
  readonly #routes = new Map<Address, Route>();
  readonly #downReported = new Set<Address>();
  #handler: TransportHandler | undefined;

  constructor(
    private readonly inner: Transport,
    private readonly signer: Signer,
    private readonly options: { maxRoutes?: number; onRefused?: (err: unknown) => void; now?: () => number } = {},
  ) {
    this.self = key(inner.self);
    inner.setHandler({
      message: (from, frame) => (isEnvelope(frame) ? this.#relayed(from, frame) : this.#handler?.message(from, frame)),
      connected: () => this.#handler?.connected?.(),
      peerUp: (peer) => {
        this.#downReported.delete(key(peer));
        this.#handler?.peerUp?.(peer);
      },
      peerDown: (peer) => {
        if (this.#fresh(key(peer))) return;
        this.#downReported.add(key(peer));
        this.#handler?.peerDown?.(peer);
      },
    });
  }

  async send(to: Address, frame: Uint8Array): Promise<void> {
    const route = this.#fresh(key(to));
    const direct = this.inner.send(to, frame);
    if (!route) return direct;
    await Promise.allSettled([direct, this.inner.send(route.via, seal(this.signer, to, frame))]);
  }

  setHandler(handler: TransportHandler): void {
    this.#handler = handler;
  }

  watchPeer(peer: Address): void {
    this.inner.watchPeer?.(peer);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  #now(): number {
    return this.options.now?.() ?? Date.now();
  }

  #fresh(peer: Address): Route | undefined {
    const route = this.#routes.get(peer);
    return route && this.#now() - route.heardAt < RELAY_WINDOW_MS ? route : undefined;
  }

  #relayed(via: Address, bytes: Uint8Array): void {
    let env: Envelope;
    try {
      env = open(bytes);
      if (env.to !== this.self) throw new WrongPeerError('a relay envelope for someone else');
      if (Math.abs(this.#now() - env.at) > RELAY_WINDOW_MS) throw new WrongPeerError('a relay envelope outside the time window');
    } catch (err) {
      this.options.onRefused?.(err);
      return;
    }
    const route = this.#routes.get(env.from);
    if (!route || env.at >= route.at) {
      this.#routes.delete(env.from);
      this.#routes.set(env.from, { via: key(via), at: env.at, heardAt: this.#now() });
      // Bounded: the oldest route goes first.
      if (this.#routes.size > (this.options.maxRoutes ?? 10_000)) this.#routes.delete(this.#routes.keys().next().value!);
    }
    if (this.#downReported.delete(env.from)) this.#handler?.peerUp?.(env.from);
    this.#handler?.message(env.from, env.frame);
  }
}
