/** 0x-prefixed lowercase hex. */
export type Hex = `0x${string}`;
/** 20-byte account address, 0x-prefixed lowercase hex. */
export type Address = Hex;
/** 32-byte identifier, 0x-prefixed lowercase hex. */
export type Bytes32 = Hex;

/** The zero address stands for the chain's native asset (ETH). */
export const NATIVE_ASSET: Address = '0x0000000000000000000000000000000000000000';

export const ChannelKind = {
  /** Device ↔ gateway, funded on-chain by deposits. */
  Ledger: 0,
  /** Device ↔ device through the gateway; every state signed by both. */
  Virtual: 1,
  /** Device ↔ device through the gateway; participant 0 pays with cumulative vouchers. */
  Stream: 2,
} as const;
export type ChannelKind = (typeof ChannelKind)[keyof typeof ChannelKind];

/** Fixed for a channel's life; hashed into its id. Channels have exactly two participants. */
export interface Params {
  chainId: bigint;
  /** The adjudicator contract the channel is bound to. */
  adjudicator: Address;
  participants: readonly [Address, Address];
  /** Seconds a registered state may be refuted for. */
  challengeDuration: bigint;
  /** uint256 derived from both sides' nonce shares, so neither side alone picks the id. */
  nonce: bigint;
  kind: ChannelKind;
}

/**
 * Funds a parent channel has locked for a virtual channel. `balances` is the total per
 * asset; `indexMap[i]` is the parent participant who receives what virtual participant i
 * ends with.
 */
export interface SubAlloc {
  id: Bytes32;
  balances: readonly bigint[];
  indexMap: readonly [number, number];
}

export interface Allocation {
  /** Asset addresses; NATIVE_ASSET for ETH. */
  assets: readonly Address[];
  /** balances[asset][participant]. */
  balances: readonly (readonly [bigint, bigint])[];
  locked: readonly SubAlloc[];
}

export interface State {
  channelId: Bytes32;
  version: bigint;
  outcome: Allocation;
  /** A final state ends the channel: it concludes on-chain at once and nothing follows it. */
  isFinal: boolean;
}

/** 65 bytes: r ‖ s ‖ v with v ∈ {27, 28}, as Solidity's ecrecover takes it. */
export type Signature = Uint8Array;

/** A state with a signature slot per participant; `null` where that one has not signed. */
export interface SignedState {
  state: State;
  sigs: readonly [Signature | null, Signature | null];
}
