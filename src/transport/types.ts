import type { Address } from '../model/types.ts';

/**
 * What a transport delivers to the agent above it. `from` is the sender the transport
 * claims (broker topic, BLE link); the protocol never trusts it alone: every message
 * that makes a party act carries a signature it checks.
 */
export interface TransportHandler {
  /** One whole message (the transport does framing and fragmentation below this). */
  message(from: Address, frame: Uint8Array): void;
  /** The transport (re)connected: a good moment to resynchronise channels. */
  connected?(): void;
  /** A peer went offline (MQTT last will, BLE disconnect), when the transport can tell. */
  peerDown?(peer: Address): void;
  /** A watched peer is online again (or was when first seen). */
  peerUp?(peer: Address): void;
}

/**
 * One interface for every transport: memory (tests with faults), MQTT, BLE. Delivery is
 * best effort: messages may be lost, duplicated or reordered, and the channel protocol
 * copes by retransmitting and resynchronising.
 */
export interface Transport {
  readonly self: Address;
  /** Hands the frame to the transport. Resolves once it is queued or sent; throws TransportError when it cannot be. */
  send(to: Address, frame: Uint8Array): Promise<void>;
  /** Installs the single handler; messages arriving before it is set may be dropped. */
  setHandler(handler: TransportHandler): void;
  /**
   * Asks to be told through `peerDown` and `peerUp` when this peer goes offline and back. Optional: only
   * transports that can observe a peer's presence (MQTT last will, memory) offer it.
   */
  watchPeer?(peer: Address): void;
  close(): Promise<void>;
}
