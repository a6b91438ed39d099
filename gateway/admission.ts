import type { Policy } from '../src/client/agent.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { type Address, ChannelKind } from '../src/model/types.ts';
import type { OpenPropose } from '../src/wire/messages.ts';

/**
 * What the gateway will put in, and for whom: every limit is a flag, shown in the ready
 * line and the status API. Amounts are per asset, in the asset's smallest unit.
 */
export interface AdmissionLimits {
  /** Most the gateway puts into one device's ledger channels together. */
  maxDeposit: bigint;
  /** Most it puts into all devices' ledger channels together. */
  maxTotalDeposit: bigint;
  /** Most live ledger channels one device may hold with it. */
  maxChannelsPerDevice: number;
  /** Least a device must put into its own side: a key with nothing at stake gets no channel. */
  minDeviceDeposit: bigint;
  /** How long a device has to deposit its side before its channel is abandoned (ms). */
  fundingTimeoutMs: number;
}

const ETH = 10n ** 18n;

/** The limits unless configured (the CLI's defaults). */
export const DEFAULT_LIMITS: AdmissionLimits = {
  maxDeposit: ETH,
  maxTotalDeposit: 100n * ETH,
  maxChannelsPerDevice: 2,
  minDeviceDeposit: ETH / 1000n,
  fundingTimeoutMs: 3_600_000,
};

/** The gateway's side of a ledger channel proposed by a device (index 1 of its balances). */
const gatewaySide = (p: Pick<OpenPropose, 'balances'>, asset: number): bigint => p.balances[asset]![1];

/**
 * Whether the gateway accepts a device's ledger-channel proposal: a ledger channel, in
 * which the device puts at least minDeviceDeposit of every asset, that keeps the device
 * within its channel count and its deposit cap, and all devices within the total cap.
 * (The gateway deposits its side only once the device's is on-chain: see chain.ts.)
 */
export function admission(channels: () => ChannelRecord[], limits: AdmissionLimits): Policy['acceptOpen'] {
  return (p: OpenPropose, from: Address): boolean => {
    if (p.kind !== ChannelKind.Ledger) return false;
    if (p.balances.some(([device]) => device < limits.minDeviceDeposit)) return false;
    const live = channels().filter((c) => c.params.kind === ChannelKind.Ledger && c.phase !== 'final');
    const mine = live.filter((c) => c.peer === from.toLowerCase());
    if (mine.length >= limits.maxChannelsPerDevice) return false;
    const committed = (channels: typeof live, asset: number): bigint => channels.reduce((sum, c) => sum + (c.current.state.outcome.balances[asset]?.[c.idx] ?? 0n), 0n);
    return p.balances.every((_, asset) => {
      const ask = gatewaySide(p, asset);
      return committed(mine, asset) + ask <= limits.maxDeposit && committed(live, asset) + ask <= limits.maxTotalDeposit;
    });
  };
}
