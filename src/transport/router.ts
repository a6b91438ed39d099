import { TransportError } from '../errors.ts';
import type { Address } from '../model/types.ts';
import type { Transport, TransportHandler } from './types.ts';
import { lower as key } from './address.ts';

// Two transports as one, for a device that talks to its gateway over MQTT and to a nearby
// peer over BLE: a frame to a peer goes over the near link while that link is up (the
// peer was seen on it: a bound link, or a frame from it), else over the far one, and over
// the far one too when the near send fails. Frames from either reach the one handler.
// A peer counts as down only when neither link has it; the agent hears `peerUp` once,
// when the first link has it again. Which link carried a frame never matters to the
// protocol: every message that makes a party act is signed.

export class RoutedTransport implements Transport {
  readonly self: Address;
  readonly #near: Transport;
  readonly #far: Transport;
  /** Peers the near link reaches now. */
  readonly #nearUp = new Set<Address>();
  /** Peers the far link says are offline (its presence, for watched peers). */
  readonly #farDown = new Set<Address>();
  #handler: TransportHandler | undefined;

  constructor(near: Transport, far: Transport) {
    if (key(near.self) !== key(far.self)) throw new TransportError('both links must belong to the same address');
    this.self = far.self;
    this.#near = near;
    this.#far = far;
    near.setHandler({
      message: (from, frame) => {
        this.#up('near', from);
        this.#handler?.message(from, frame);
      },
      connected: () => this.#handler?.connected?.(),
      peerUp: (peer) => this.#up('near', peer),
      peerDown: (peer) => this.#down('near', peer),
    });
    far.setHandler({
      message: (from, frame) => this.#handler?.message(from, frame),
      connected: () => this.#handler?.connected?.(),
      peerUp: (peer) => this.#up('far', peer),
      peerDown: (peer) => this.#down('far', peer),
    });
  }

  /** Whether frames to `peer` go over the near link now. */
  isNear(peer: Address): boolean {
    return this.#nearUp.has(key(peer));
  }

  async send(to: Address, frame: Uint8Array): Promise<void> {
    if (this.isNear(to)) {
      try {
        return await this.#near.send(to, frame);
      } catch {
        this.#down('near', to);
      }
    }
    return this.#far.send(to, frame);
  }

  setHandler(handler: TransportHandler): void {
    this.#handler = handler;
  }

  watchPeer(peer: Address): void {
    this.#near.watchPeer?.(peer);
    this.#far.watchPeer?.(peer);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#near.close(), this.#far.close()]);
  }

  #up(link: 'near' | 'far', peer: Address): void {
    const p = key(peer);
    const wasUp = this.#nearUp.has(p) || !this.#farDown.has(p);
    if (link === 'near') this.#nearUp.add(p);
    else this.#farDown.delete(p);
    if (!wasUp || link === 'far') this.#handler?.peerUp?.(peer);
  }

  #down(link: 'near' | 'far', peer: Address): void {
    const p = key(peer);
    if (link === 'near' && !this.#nearUp.delete(p)) return;
    if (link === 'far') this.#farDown.add(p);
    // Down for the agent only when no link has it.
    if (!this.#nearUp.has(p) && this.#farDown.has(p)) this.#handler?.peerDown?.(peer);
  }
}
