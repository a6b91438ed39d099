import { TransportError } from '../../errors.ts';
import type { Address } from '../../model/types.ts';
import { type Random, seededRandom } from '../random.ts';
import type { Advert, BleLink, CentralBackend, LinkEvents, PeripheralBackend, Sighting } from './link.ts';
import { lower } from '../address.ts';

// An in-process BLE radio for protocol tests: peripherals advertise on it, centrals
// connect through it, and it injects faults into packets that go without response (lost,
// repeated, cut short), drops links, or silences them the way btvirt does when a peer
// dies (neither side is told). The real stack is tested in the qemu guest (test/ble-vm).

export interface RadioFaults {
  /** Probability that a packet sent without response is lost. */
  drop?: number;
  /** Probability that such a packet arrives twice. */
  duplicate?: number;
  /** Probability that such a packet arrives cut short. */
  truncate?: number;
}

interface Pair {
  peripheral: Address;
  central: Address;
  toPeripheral: LinkEvents;
  toCentral: LinkEvents;
  silent: boolean;
  closed: boolean;
}

export class MemoryRadio {
  faults: RadioFaults;
  readonly #random: Random;
  readonly #mtu: number;
  readonly #peripherals = new Map<Address, { name: string; price: bigint; self: Address; accept: (link: BleLink) => LinkEvents }>();
  readonly #pairs = new Set<Pair>();

  constructor(options: { mtu?: number; seed?: number; faults?: RadioFaults } = {}) {
    this.#mtu = options.mtu ?? 247;
    this.#random = seededRandom(options.seed ?? 1);
    this.faults = { ...options.faults };
  }

  /**
   * The peripheral role of the device `self`. `claim` makes it advertise another address
   * (an impostor: its handshake still signs with its own key).
   */
  peripheral(self: Address, claim?: Address): PeripheralBackend {
    const on = lower(claim ?? self);
    return {
      start: async (advert: Advert, accept) => {
        this.#peripherals.set(on, { name: advert.name, price: advert.price, self: lower(self), accept });
      },
      stop: async () => {
        this.#peripherals.delete(on);
        this.drop(self);
      },
    };
  }

  /** The central role of the device `self`. */
  central(self: Address): CentralBackend {
    return {
      scan: async () => [...this.#peripherals].map(([address, p]): Sighting => ({ address, name: p.name, price: p.price, rssi: -50 })),
      connect: async (peer, events) => {
        const target = this.#peripherals.get(lower(peer));
        if (!target) throw new TransportError(`${peer} is not in range`);
        const pair: Pair = { peripheral: target.self, central: lower(self), toCentral: events, toPeripheral: { packet: () => {}, closed: () => {} }, silent: false, closed: false };
        this.#pairs.add(pair);
        pair.toPeripheral = target.accept(this.#end(pair, 'toPeripheral', 'toCentral'));
        return this.#end(pair, 'toCentral', 'toPeripheral');
      },
      stop: async () => this.drop(self),
    };
  }

  /** Closes every link of `address`; both ends are told. */
  drop(address: Address): void {
    for (const pair of this.#linksOf(address)) this.#close(pair);
  }

  /** Silences every link of `address`: packets vanish and neither end is told (a peer that died under btvirt). */
  silence(address: Address): void {
    for (const pair of this.#linksOf(address)) pair.silent = true;
  }

  /** Links open now. */
  get links(): number {
    return [...this.#pairs].filter((p) => !p.closed).length;
  }

  #linksOf(address: Address): Pair[] {
    const a = lower(address);
    return [...this.#pairs].filter((p) => p.peripheral === a || p.central === a);
  }

  /** One end of a pair (`own` its events): what it sends reaches `other`. */
  #end(pair: Pair, own: 'toCentral' | 'toPeripheral', other: 'toCentral' | 'toPeripheral'): BleLink {
    return {
      mtu: this.#mtu,
      send: async (packet, reliable) => {
        if (packet.length > this.#mtu - 3) throw new TransportError(`a packet of ${packet.length} bytes over an MTU of ${this.#mtu}`);
        if (pair.closed) throw new TransportError('the link is gone');
        if (pair.silent) {
          if (reliable) await new Promise(() => {}); // a write with response to a dead peer never completes
          return;
        }
        const copies = reliable ? [packet] : this.#faulted(packet);
        for (const copy of copies) setImmediate(() => pair.closed || pair.silent || pair[other].packet(copy));
      },
      close: async () => this.#close(pair, own),
    };
  }

  #faulted(packet: Uint8Array): Uint8Array[] {
    const { drop = 0, duplicate = 0, truncate = 0 } = this.faults;
    if (this.#random() < drop) return [];
    const copy = this.#random() < truncate ? packet.slice(0, Math.floor(this.#random() * packet.length)) : packet.slice();
    return this.#random() < duplicate ? [copy, copy.slice()] : [copy];
  }

  /** Closes a link; both ends hear of it, but of a silenced link only the end that closed it. */
  #close(pair: Pair, by?: 'toCentral' | 'toPeripheral'): void {
    if (pair.closed) return;
    pair.closed = true;
    this.#pairs.delete(pair);
    const told = pair.silent && by ? [pair[by]] : [pair.toCentral, pair.toPeripheral];
    setImmediate(() => {
      for (const end of told) end.closed();
    });
  }
}
