// The seams to the payment layer. The hotspot and its client know nothing of vouchers:
// the payment layer (stream vouchers in a virtual channel) implements these and reports
// amounts as cumulative totals in wei, per paying channel, so that each channel is
// metered on its own and a payer may settle one and come back with another.

export type PaidListener = (client: string, channel: string, cumulative: bigint) => void;

/** The hotspot's side: what each client has paid in each of its channels, as verified by the payment layer. */
export interface PaymentsIn {
  /** Cumulative amount `client` (a lowercase 0x address) has paid in `channel` (lowercase 0x id); 0n if none, or not its channel. */
  credited(client: string, channel: string): bigint;
  /** Emitted whenever a channel's cumulative amount rises. */
  on(event: 'paid', listener: PaidListener): unknown;
  off(event: 'paid', listener: PaidListener): unknown;
}

/** The client's side: send a voucher for `cumulative` wei in total. */
export interface PaymentsOut {
  payUpTo(cumulative: bigint): Promise<void> | void;
}

/**
 * What the hotspot has served from each channel, kept across restarts: without it a
 * restart would serve again everything a channel had paid for. `save` is called at each
 * unit boundary with the end of the unit being served (rounded up: a crash costs the
 * client at most one unit, never the hotspot).
 */
export interface ServedLog {
  served(channel: string): number;
  save(channel: string, bytes: number): void;
  /** The channel is settled and gone. */
  forget(channel: string): void;
}
