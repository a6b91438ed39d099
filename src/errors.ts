// Every error picopay raises on purpose, in one place (viem style). Each class has a
// stable `code` so that callers, logs and peers can tell rejections apart without
// parsing messages.

export abstract class PicopayError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

// ---- wire: a message from a peer that cannot be accepted as bytes ----

export abstract class WireError extends PicopayError {}

export class MessageTooLargeError extends WireError {
  readonly code = 'WIRE_TOO_LARGE';
  constructor(readonly size: number, readonly limit: number) {
    super(`message of ${size} bytes exceeds the limit of ${limit}`);
  }
}

export class MalformedMessageError extends WireError {
  readonly code = 'WIRE_MALFORMED';
}

export class UnsupportedVersionError extends WireError {
  readonly code = 'WIRE_VERSION';
  constructor(readonly version: unknown) {
    super(`unsupported protocol version ${String(version)}`);
  }
}

export class UnknownMessageTypeError extends WireError {
  readonly code = 'WIRE_UNKNOWN_TYPE';
  constructor(readonly type: unknown) {
    super(`unknown message type ${String(type)}`);
  }
}

/** A fragment of a framed message (BLE) that does not follow the one before: lost, repeated, out of order or cut short. */
export class FragmentError extends WireError {
  readonly code = 'WIRE_FRAGMENT';
}

export class SchemaError extends WireError {
  readonly code = 'WIRE_SCHEMA';
  constructor(readonly path: string, reason: string) {
    super(`invalid field ${path}: ${reason}`);
  }
}

// ---- channel protocol: a well-formed message or request that must be refused ----

export abstract class ProtocolError extends PicopayError {}

export class InvalidSignatureError extends ProtocolError {
  readonly code = 'INVALID_SIGNATURE';
}

/** A proposal far ahead of the next version: no honest party skips more than a few. */
export class VersionGapError extends ProtocolError {
  readonly code = 'VERSION_GAP';
  constructor(readonly got: bigint, readonly floor: bigint) {
    super(`version ${got} is too far above ${floor}`);
  }
}

export class StaleVersionError extends ProtocolError {
  readonly code = 'STALE_VERSION';
  constructor(readonly got: bigint, readonly needAbove: bigint) {
    super(`version ${got} is not above ${needAbove}`);
  }
}

export class ConservationError extends ProtocolError {
  readonly code = 'NOT_CONSERVED';
}

export class NegativeBalanceError extends ProtocolError {
  readonly code = 'NEGATIVE_BALANCE';
}

export class InvalidAllocationError extends ProtocolError {
  readonly code = 'INVALID_ALLOCATION';
}

/** Channel terms outside what the contract or this party accepts (e.g. the challenge duration). */
export class InvalidTermsError extends ProtocolError {
  readonly code = 'INVALID_TERMS';
}

export class FinalStateError extends ProtocolError {
  readonly code = 'CHANNEL_FINAL';
}

export class UnknownChannelError extends ProtocolError {
  readonly code = 'UNKNOWN_CHANNEL';
}

export class WrongPeerError extends ProtocolError {
  readonly code = 'WRONG_PEER';
}

export class UpdateInProgressError extends ProtocolError {
  readonly code = 'UPDATE_IN_PROGRESS';
}

/** Both sides proposed at once and this side's proposal lost the tie-break. Retryable. */
export class UpdateConflictError extends ProtocolError {
  readonly code = 'UPDATE_CONFLICT';
}

export class UpdateRejectedError extends ProtocolError {
  readonly code = 'UPDATE_REJECTED';
  constructor(readonly reason: string) {
    super(`peer rejected the update: ${reason}`);
  }
}

export class OpenRejectedError extends ProtocolError {
  readonly code = 'OPEN_REJECTED';
  constructor(readonly reason: string) {
    super(`peer rejected the channel: ${reason}`);
  }
}

export class AliasCollisionError extends ProtocolError {
  readonly code = 'ALIAS_COLLISION';
}

export class InsufficientFundsError extends ProtocolError {
  readonly code = 'INSUFFICIENT_FUNDS';
}

export class ProtocolTimeoutError extends ProtocolError {
  readonly code = 'TIMEOUT';
}

export class ChannelClosedError extends ProtocolError {
  readonly code = 'CHANNEL_CLOSED';
}

/** The ledger channel's deposits are not (or no longer, after a re-org) on-chain: nothing is paid or served on it until they are. */
export class UnfundedError extends ProtocolError {
  readonly code = 'UNFUNDED';
}

/** A claim against a peer that is still there: settle with it instead (refused as Policy). */
export class PeerOnlineError extends ProtocolError {
  readonly code = 'PEER_ONLINE';
}

// ---- local files ----

export class KeystoreError extends PicopayError {
  readonly code = 'KEYSTORE';
}

export class WrongPasswordError extends PicopayError {
  readonly code = 'KEYSTORE_PASSWORD';
  constructor() {
    super('wrong keystore password (MAC mismatch)');
  }
}

export class StoreError extends PicopayError {
  readonly code = 'STORE';
}

export class TransportError extends PicopayError {
  readonly code = 'TRANSPORT';
}

export class ConfigError extends PicopayError {
  readonly code = 'CONFIG';
}

// ---- the chain, as a device reads it (plain JSON-RPC; chain actions have src/chain/errors.ts) ----

/** A chain read failed or answered something that is not what was asked for. */
export class ChainReadError extends PicopayError {
  readonly code = 'CHAIN_READ';
}
