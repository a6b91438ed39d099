// Answers disputes for the channels a party watches: when a registration older than the
// party's latest fully signed state (or lower than its highest voucher, as a stream's
// payee) appears on-chain, it submits the newer one before the challenge period ends.
// A device can run it itself, or a watchtower that is not its counterparty can.
import type { Bytes32, Params, SignedState } from '../model/types.ts';
import type { ChainClient, TxResult } from './client.ts';
import type { Dispute } from './encode.ts';
import { AdjudicatorRevertError } from './errors.ts';
import { register } from './register.ts';
import { registerVoucher } from './registerVirtual.ts';
import { watchAdjudicator, type Watcher } from './watcher.ts';

/** What the watching party holds for a channel. */
export type Latest =
  | { params: Params; signed: SignedState }
  | { params: Params; voucher: { cumulative: bigint; signature: Uint8Array } };

export interface Response {
  channelId: Bytes32;
  answered: Dispute;
  tx: TxResult;
}

export interface WatchtowerOptions {
  /** The party's latest for a channel, or null for a channel it does not watch. */
  latest(channelId: Bytes32): Latest | null | Promise<Latest | null>;
  /** Registrations are answered once this deep; keep it well below the challenge duration in blocks. */
  confirmations: number;
  fromBlock?: bigint;
  pollIntervalMs?: number;
  onResponse?: (r: Response) => void;
  /** Failed answers (e.g. the challenge period ended) and polling errors. */
  onError?: (err: Error) => void;
}

export function startWatchtower(client: ChainClient, opts: WatchtowerOptions): Promise<Watcher> {
  return watchAdjudicator(client, {
    confirmations: opts.confirmations,
    fromBlock: opts.fromBlock,
    pollIntervalMs: opts.pollIntervalMs,
    onError: opts.onError,
    onEvent: async (event) => {
      if (event.eventName !== 'Registered') return;
      const { channelId, version, timeout, outcome } = event.args;
      const latest = await opts.latest(channelId);
      if (!latest) return;
      const registered: Dispute = { version, timeout, outcome };
      try {
        const tx = await answer(client, latest, registered);
        if (tx) opts.onResponse?.({ channelId, answered: registered, tx });
      } catch (err) {
        // What is registered by now is already as new as ours (its own event follows).
        if (err instanceof AdjudicatorRevertError && (err.errorName === 'VersionNotNewer' || err.errorName === 'VoucherNotHigher')) return;
        opts.onError?.(err as Error);
      }
    },
  });
}

/** Submits what beats `registered`, or nothing if it already is the latest. */
async function answer(client: ChainClient, latest: Latest, registered: Dispute): Promise<TxResult | null> {
  if ('voucher' in latest) {
    if (latest.voucher.cumulative <= BigInt(registered.outcome)) return null;
    return registerVoucher(client, { params: latest.params, ...latest.voucher });
  }
  if (latest.signed.state.version <= registered.version) return null;
  // Refutes; a final ledger state closes the channel even during a dispute.
  return register(client, latest);
}
