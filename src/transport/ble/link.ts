import type { Address } from '../../model/types.ts';

// What a BLE backend (BlueZ over D-Bus, or the in-memory radio of the tests) gives the
// BLE transport: GATT connections as packet pipes, and advertisements. A packet is what
// one ATT write or notification carries (at most the link's MTU less 3 bytes); framing,
// the signed link handshake and liveness live above, in transport.ts.

/** What a payee advertises: its picopay address, a short name and its price per payment (what `picopay nearby` lists). */
export interface Advert {
  address: Address;
  name: string;
  /** Wei per payment; a claim until the payee signs for it. */
  price: bigint;
}

/** A payee heard advertising. `address` is a claim until the link's handshake proves it. */
export interface Sighting extends Advert {
  /** Signal strength in dBm, when the backend reports it. */
  rssi: number | null;
}

/** One GATT connection, seen from either end. */
export interface BleLink {
  /** The negotiated ATT MTU. */
  readonly mtu: number;
  /**
   * Sends one packet: a write from a central (`reliable`: with response; else a write
   * command, which may be lost), a notification from a peripheral. Rejects when the link is gone.
   */
  send(packet: Uint8Array, reliable: boolean): Promise<void>;
  close(): Promise<void>;
}

/** What a link reports to the transport. */
export interface LinkEvents {
  packet(data: Uint8Array): void;
  /** The link is gone (either side closed it, or the backend saw it drop). Called once. */
  closed(): void;
}

/** The peripheral role: advertise and accept links from centrals. */
export interface PeripheralBackend {
  /** Starts advertising; every central that connects is handed to `accept`, which returns the link's events. */
  start(advert: Advert, accept: (link: BleLink) => LinkEvents): Promise<void>;
  stop(): Promise<void>;
}

/** The central role: find payees and connect to them. */
export interface CentralBackend {
  /** Listens for advertisements for `ms`, reporting each payee once (the strongest signal heard). */
  scan(ms: number): Promise<Sighting[]>;
  /** Finds the payee advertising `peer` and connects to it; rejects after `timeoutMs`. */
  connect(peer: Address, events: LinkEvents, timeoutMs: number): Promise<BleLink>;
  /** The device last connected to for `peer` failed its handshake: try others advertising it first (a liar may be near). */
  refused?(peer: Address): void;
  stop(): Promise<void>;
}
