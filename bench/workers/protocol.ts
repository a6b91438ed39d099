import type { Address, Bytes32, ChannelKind } from '../../src/model/types.ts';
import type { Trace } from './counting.ts';

// What the virtual-channel bench says to its device processes over the IPC channel
// (structured clone, so bigints travel as they are). Times are absolute milliseconds
// (performance.timeOrigin + performance.now()), comparable between processes.

/** No chain is involved: channels are bound to this id and address only. */

export interface StartArgs {
  brokerUrl: string;
  gateway: Address;
  storePath: string;
  /** Ledger channel with the gateway: [device's, gateway's] funds. */
  deposit: bigint;
  gatewayDeposit: bigint;
  /** Stream payee: fsync a voucher once this much was received since the last fsynced one. */
  voucherDurableEvery: bigint;
}

/** Each command: [arguments, result]. */
export interface Commands {
  start: [StartArgs, { address: Address }];
  openVirtual: [{ peer: Address; gateway: Address; kind: ChannelKind; lock: bigint }, { vcId: Bytes32; ms: number }];
  waitFunded: [{ vcId: Bytes32 }, { at: number }];
  /** Stream payer: `count` vouchers of `amount` each, as fast as the transport takes them. */
  stream: [{ vcId: Bytes32; count: number; amount: bigint }, { firstSentAt: number; lastSentAt: number }];
  /** Stream payee: resolves once a voucher for at least `cumulative` arrived; `received` counts verified vouchers so far. */
  awaitVoucher: [{ vcId: Bytes32; cumulative: bigint }, { at: number; received: number }];
  /** Bidirectional payer: `count` payments, each awaited (proposal + acceptance). */
  bidi: [{ vcId: Bytes32; count: number; amount: bigint }, { ms: number }];
  resetCount: [Record<string, never>, null];
  count: [Record<string, never>, { bytes: number; messages: number }];
  /** Starts recording when messages leave and arrive; `traced` ends it and returns the times. */
  trace: [Record<string, never>, null];
  traced: [Record<string, never>, Trace];
  stop: [Record<string, never>, null];
}

export type Command = keyof Commands;

export interface Request<C extends Command = Command> {
  id: number;
  cmd: C;
  args: Commands[C][0];
}

export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export const now = (): number => performance.timeOrigin + performance.now();

/** Stream payer: payments it may have out that the payee has not acknowledged. */
export const STREAM_WINDOW = 64n;
