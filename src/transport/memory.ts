import { TransportError } from '../errors.ts';
import type { Address } from '../model/types.ts';
import { seededRandom, type Random } from './random.ts';
import type { Transport, TransportHandler } from './types.ts';
import { lower as normalize } from './address.ts';

/** Faults the network injects into every message; all probabilities are in [0, 1]. */
export interface MemoryFaults {
  /** Probability that a message is lost. */
  drop?: number;
  /** Probability that a message is delivered twice. */
  duplicate?: number;
  /** Probability that a message is held back by a random extra delay, so later ones overtake it. */
  reorder?: number;
  /** Upper bound of that extra delay, in ms (default 5). */
  jitterMs?: number;
  /** Fixed delay added to every message, in ms. */
  delayMs?: number;
}

export interface MemoryNetworkOptions {
  /** Seed for the fault decisions (default 1). Ignored when `random` is given. */
  seed?: number;
  random?: Random;
  faults?: MemoryFaults;
  /** Receives errors thrown by handlers; by default they are rethrown outside the network. */
  onHandlerError?: (error: unknown) => void;
}

export interface MemoryNetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
}

interface Delivery {
  from: Address;
  to: Address;
  frame: Uint8Array;
}

const DEFAULT_JITTER_MS = 5;

/**
 * An in-process hub joining MemoryTransports, with seeded fault injection. Every fault
 * decision is drawn from the network's generator in send order, so the same sequence of
 * sends with the same seed meets the same faults. Delivery is always asynchronous; with
 * no delay configured it takes one setImmediate turn and no timers.
 */
export class MemoryNetwork {
  readonly stats: MemoryNetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0 };
  private readonly random: Random;
  private readonly onHandlerError: (error: unknown) => void;
  private faults: MemoryFaults;
  private readonly endpoints = new Map<Address, MemoryTransport>();
  private readonly disconnected = new Set<Address>();
  /** Deliveries due on the next turn, drained in batches so that FIFO order holds. */
  private dueNext: Delivery[] = [];
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private idleCheckScheduled = false;

  constructor(options: MemoryNetworkOptions = {}) {
    this.random = options.random ?? seededRandom(options.seed ?? 1);
    this.faults = { ...options.faults };
    this.onHandlerError =
      options.onHandlerError ??
      ((error) => {
        // Surface handler bugs loudly (tests fail) without stopping the rest of the batch.
        setImmediate(() => {
          throw error;
        });
      });
  }

  /** Creates the transport of one party, attached to this network. */
  endpoint(address: Address): MemoryTransport {
    const self = normalize(address);
    if (this.endpoints.has(self)) throw new TransportError(`${self} is already attached to this network`);
    const transport = new MemoryTransport(this, self);
    this.endpoints.set(self, transport);
    return transport;
  }

  /** Replaces the faults for every message sent from now on. */
  setFaults(faults: MemoryFaults): void {
    this.faults = { ...faults };
  }

  /** Cuts a party off: messages to and from it are lost, including those already in flight. */
  disconnect(address: Address): void {
    const peer = normalize(address);
    if (this.disconnected.has(peer)) return;
    this.disconnected.add(peer);
    for (const endpoint of this.endpoints.values()) {
      if (endpoint.self !== peer && this.isConnected(endpoint.self)) endpoint.notifyPeerDown(peer);
    }
  }

  /** Brings a party back; its handler's `connected()` fires. */
  reconnect(address: Address): void {
    const peer = normalize(address);
    if (!this.disconnected.delete(peer)) return;
    this.endpoints.get(peer)?.notifyConnected();
  }

  isConnected(address: Address): boolean {
    return !this.disconnected.has(normalize(address));
  }

  /**
   * Resolves once no message is in flight, checked one event-loop turn after the network
   * empties, so that a handler answering at once is waited for too.
   */
  idle(): Promise<void> {
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.scheduleIdleCheck();
    });
  }

  /**
   * Removes a party, as if its process had crashed: what its old transport sends from now
   * on is lost, and `endpoint(address)` may attach a new one (messages still in flight
   * reach the new one, as a broker session would deliver them).
   */
  detach(address: Address): void {
    const peer = normalize(address);
    this.endpoints.delete(peer);
    this.disconnected.delete(peer);
  }

  /**
   * Delivers `frame` to `to` as if `from` had sent it: what an outsider who can publish on
   * an open broker under any name does. For tests of forged and replayed messages.
   */
  forge(from: Address, to: Address, frame: Uint8Array): void {
    this.stats.sent++;
    this.schedule({ from: normalize(from), to: normalize(to), frame: frame.slice() }, 0);
  }

  /** @internal Called by MemoryTransport.send. */
  route(sender: MemoryTransport, to: Address, frame: Uint8Array): void {
    this.stats.sent++;
    const faults = this.faults;
    const from = sender.self;
    const attached = this.endpoints.get(from) === sender;
    if (!attached || !this.isConnected(from) || this.chance(faults.drop)) {
      this.stats.dropped++;
      return;
    }
    const copies = this.chance(faults.duplicate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      // Each copy gets its own bytes: a receiver that mutates its frame must not affect the other.
      this.schedule({ from, to, frame: frame.slice() }, this.delayFor(faults));
    }
  }

  /** @internal Called when an endpoint closes; a newer endpoint with the same address stays. */
  endpointClosed(transport: MemoryTransport): void {
    if (this.endpoints.get(transport.self) === transport) this.detach(transport.self);
  }

  private chance(probability: number | undefined): boolean {
    return probability !== undefined && probability > 0 && this.random() < probability;
  }

  private delayFor(faults: MemoryFaults): number {
    const jitter = this.chance(faults.reorder) ? this.random() * (faults.jitterMs ?? DEFAULT_JITTER_MS) : 0;
    return (faults.delayMs ?? 0) + jitter;
  }

  private schedule(delivery: Delivery, delayMs: number): void {
    this.inFlight++;
    if (delayMs > 0) {
      setTimeout(() => this.deliver(delivery), delayMs);
      return;
    }
    this.dueNext.push(delivery);
    if (this.dueNext.length === 1) setImmediate(() => this.drainDue());
  }

  private drainDue(): void {
    const batch = this.dueNext;
    this.dueNext = [];
    for (const delivery of batch) this.deliver(delivery);
  }

  private deliver({ from, to, frame }: Delivery): void {
    this.inFlight--;
    const recipient = this.endpoints.get(to);
    if (recipient === undefined || !this.isConnected(to)) {
      this.stats.dropped++;
    } else {
      this.stats.delivered++;
      try {
        recipient.receive(from, frame);
      } catch (error) {
        this.onHandlerError(error);
      }
    }
    if (this.inFlight === 0) this.scheduleIdleCheck();
  }

  private scheduleIdleCheck(): void {
    if (this.idleCheckScheduled || this.idleWaiters.length === 0) return;
    this.idleCheckScheduled = true;
    setImmediate(() => {
      this.idleCheckScheduled = false;
      if (this.inFlight > 0) return; // the next delivery that empties the network checks again
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    });
  }
}

/** One party's view of a MemoryNetwork. Create it with `network.endpoint(address)`. */
export class MemoryTransport implements Transport {
  private handler: TransportHandler | undefined;
  private readonly watched = new Set<Address>();
  private closed = false;

  /** @internal Use MemoryNetwork.endpoint. */
  constructor(
    private readonly network: MemoryNetwork,
    readonly self: Address,
  ) {}

  async send(to: Address, frame: Uint8Array): Promise<void> {
    if (this.closed) throw new TransportError('transport is closed');
    this.network.route(this, normalize(to), frame);
  }

  setHandler(handler: TransportHandler): void {
    this.handler = handler;
  }

  watchPeer(peer: Address): void {
    this.watched.add(normalize(peer));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.network.endpointClosed(this);
  }

  /** @internal */
  receive(from: Address, frame: Uint8Array): void {
    this.handler?.message(from, frame);
  }

  /** @internal Fired asynchronously, like every other callback of a transport. */
  notifyConnected(): void {
    setImmediate(() => {
      if (!this.closed) this.handler?.connected?.();
    });
  }

  /** @internal */
  notifyPeerDown(peer: Address): void {
    if (!this.watched.has(peer)) return;
    setImmediate(() => {
      if (!this.closed) this.handler?.peerDown?.(peer);
    });
  }
}
