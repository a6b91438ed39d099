import type { Policy } from '../src/client/agent.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { type Address, type Bytes32, ChannelKind, NATIVE_ASSET } from '../src/model/types.ts';
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
  /** Most ledger channels whose device has not deposited yet, all devices together: keys cost nothing. */
  maxUnfunded: number;
  /** The assets the gateway holds channels in (lowercase addresses; 0x0 is ETH). */
  assets: Address[];
}

const ETH = 10n ** 18n;

/** The limits unless configured (the CLI's defaults). */
export const DEFAULT_LIMITS: AdmissionLimits = {
  maxDeposit: ETH,
  maxTotalDeposit: 100n * ETH,
  maxChannelsPerDevice: 2,
  minDeviceDeposit: ETH / 1000n,
  fundingTimeoutMs: 3_600_000,
  maxUnfunded: 100,
  assets: [NATIVE_ASSET],
};

/**
 * Whether the gateway accepts a device's ledger-channel proposal: a ledger channel in
 * assets it holds, in which the device puts at least minDeviceDeposit of each, that keeps
 * the device within its channel count and its deposit cap, all devices within the total
 * cap, and the channels still waiting for their device's deposit within maxUnfunded.
 * Amounts add up per asset address. (The gateway deposits its side only once the device's
 * is on-chain: see chain.ts; `deviceFunded` says whether it is.)
 */
export function admission(channels: () => ChannelRecord[], deviceFunded: (id: Bytes32) => boolean, limits: AdmissionLimits): Policy['acceptOpen'] {
  const allowed = new Set(limits.assets.map((a) => a.toLowerCase()));
  return (p: OpenPropose, from: Address): boolean => {
    if (p.kind !== ChannelKind.Ledger) return false;
    if (p.assets.some((a) => !allowed.has(a.toLowerCase())) || new Set(p.assets.map((a) => a.toLowerCase())).size !== p.assets.length) return false;
    if (p.balances.some(([device]) => device < limits.minDeviceDeposit)) return false;
    const live = channels().filter((c) => c.params.kind === ChannelKind.Ledger && c.phase !== 'final');
    const mine = live.filter((c) => c.peer === from.toLowerCase());
    if (mine.length >= limits.maxChannelsPerDevice) return false;
    if (live.filter((c) => !deviceFunded(c.id)).length >= limits.maxUnfunded) return false;
    // What the gateway holds in `asset` across `list`: its balance in each channel's current state.
    const held = (list: ChannelRecord[], asset: string): bigint =>
      list.reduce((sum, c) => {
        const i = c.current.state.outcome.assets.findIndex((x) => x.toLowerCase() === asset);
        return i < 0 ? sum : sum + c.current.state.outcome.balances[i]![c.idx];
      }, 0n);
    return p.assets.every((asset, i) => {
      const ask = p.balances[i]![1]; // the gateway's side: index 1, the accepter's
      const a = asset.toLowerCase();
      return held(mine, a) + ask <= limits.maxDeposit && held(live, a) + ask <= limits.maxTotalDeposit;
    });
  };
}
