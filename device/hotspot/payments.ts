// The two seams to the payment layer. The hotspot and its client know nothing of
// channels or vouchers: the payment layer (stream vouchers in a virtual channel)
// implements these and reports amounts as cumulative totals in wei.

export type PaidListener = (client: string, cumulative: bigint) => void;

/** The hotspot's side: what each client has paid, as verified by the payment layer. */
export interface PaymentsIn {
  /** Cumulative amount `client` (a lowercase 0x address) has paid so far; 0n if none. */
  credited(client: string): bigint;
  /** Emitted whenever a client's cumulative amount rises. */
  on(event: 'paid', listener: PaidListener): unknown;
  off(event: 'paid', listener: PaidListener): unknown;
}

/** The client's side: send a voucher for `cumulative` wei in total. */
export interface PaymentsOut {
  payUpTo(cumulative: bigint): Promise<void> | void;
}
