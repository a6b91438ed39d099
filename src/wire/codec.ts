import { Encoder } from 'cbor-x';
import {
  MalformedMessageError,
  MessageTooLargeError,
  PicopayError,
  SchemaError,
  UnknownMessageTypeError,
  UnsupportedVersionError,
} from '../errors.ts';
import { fromHex } from '../model/hash.ts';
import { ChannelKind, type SubAlloc } from '../model/types.ts';
import {
  type Balances,
  MAX_MESSAGE_BYTES,
  type Message,
  MessageType,
  PROTOCOL_VERSION,
  RejectReason,
  type StateBody,
} from './messages.ts';
import { address, array, bytes, balances, small, stateBody, uint256, uint64 } from './schema.ts';

// Positional CBOR arrays: [protocolVersion, type, ...fields]. No keys, no repeated
// addresses after the open, an 8-byte alias instead of the channel id.

// int64AsType is supported at run time but missing from cbor-x's typings; without it
// 64-bit integers would decode as lossy floats.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false, int64AsType: 'bigint' } as ConstructorParameters<typeof Encoder>[0]);

/** cbor-x writes every bigint as 8 bytes or more; small values go out as plain integers. */
const int = (x: bigint): number | bigint => (x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x);

const lockedOut = (locked: readonly SubAlloc[]): unknown[] =>
  locked.map((l) => [fromHex(l.id), l.balances.map(int), l.indexMap[0], l.indexMap[1]]);

const balancesOut = (balances: Balances): unknown[] => balances.map(([x, y]) => [int(x), int(y)]);

const bodyOut = (b: StateBody): unknown[] => [int(b.version), balancesOut(b.balances), lockedOut(b.locked), b.isFinal];

function toArray(m: Message): unknown[] {
  switch (m.type) {
    case MessageType.OpenPropose:
      return [
        m.share,
        int(m.challengeDuration),
        m.kind,
        m.assets.map((a) => fromHex(a)),
        balancesOut(m.balances),
        m.sig,
        m.gateway === null ? null : fromHex(m.gateway),
      ];
    case MessageType.OpenAccept:
      return [m.shareA, m.shareB, m.sig];
    case MessageType.OpenReject:
      return [m.shareA, m.reason, m.sig];
    case MessageType.Update:
      return [m.alias, ...bodyOut(m), m.sig];
    case MessageType.UpdateAccept:
      return [m.alias, int(m.version), m.sig];
    case MessageType.UpdateReject:
      return [m.alias, int(m.version), m.reason, m.sig];
    case MessageType.Sync:
      return [
        m.alias,
        [...bodyOut(m.current), m.current.sigs[0], m.current.sigs[1]],
        m.staged ? [...bodyOut(m.staged), m.staged.sig] : null,
      ];
    case MessageType.FundRequest:
      return [
        m.alias,
        ...bodyOut(m),
        m.sig,
        [
          fromHex(m.vc.peer),
          m.vc.index,
          int(m.vc.challengeDuration),
          int(m.vc.nonce),
          m.vc.kind,
          balancesOut(m.vc.balances),
          m.vc.sig,
        ],
      ];
    case MessageType.SettleRequest:
      return [m.alias, ...bodyOut(m), m.sig, [m.vc.id, int(m.vc.version), balancesOut(m.vc.balances), m.vc.sigs[0], m.vc.sigs[1]]];
    case MessageType.ClaimRequest:
      return [m.alias, ...bodyOut(m), m.sig, [m.vc.id, int(m.vc.cumulative), m.vc.sig]];
    case MessageType.Voucher:
      return [m.alias, int(m.cumulative), m.sig];
    case MessageType.VoucherAck:
      return [m.alias, int(m.cumulative)];
    case MessageType.CloseRequest:
      return [m.alias, int(m.cumulative), m.sig];
  }
}

export function encodeMessage(m: Message): Uint8Array {
  return cbor.encode([PROTOCOL_VERSION, m.type, ...toArray(m)]);
}

const reasons = Object.values(RejectReason);
const kinds = Object.values(ChannelKind);
const sig = (v: unknown, path: string): Uint8Array => bytes(v, path, 65);
const alias = (v: unknown): Uint8Array => bytes(v, 'alias', 8);
/** [alias, version, balances, locked, isFinal, sig]: an Update's fields, which fund and settle requests extend. */
const updateFields = (f: unknown[]) => ({ alias: alias(f[0]), ...stateBody(f.slice(1, 5), 'update'), sig: sig(f[5], 'sig') });

function fromArray(type: unknown, f: unknown[]): Message {
  const fields = (n: number): void => {
    if (f.length !== n) throw new SchemaError('message', `expected ${n} fields, got ${f.length}`);
  };
  switch (type) {
    case MessageType.OpenPropose: {
      fields(7);
      const assets = array(f[3], 'assets', 1, 8).map((a, i) => address(a, `assets[${i}]`));
      const bal = balances(f[4], 'balances');
      if (bal.length !== assets.length) throw new SchemaError('balances', 'one pair per asset required');
      return {
        type,
        share: bytes(f[0], 'share', 32),
        challengeDuration: uint64(f[1], 'challengeDuration'),
        kind: small(f[2], 'kind', kinds) as ChannelKind,
        assets,
        balances: bal,
        sig: sig(f[5], 'sig'),
        gateway: f[6] === null ? null : address(f[6], 'gateway'),
      };
    }
    case MessageType.OpenAccept:
      fields(3);
      return { type, shareA: bytes(f[0], 'shareA', 32), shareB: bytes(f[1], 'shareB', 32), sig: sig(f[2], 'sig') };
    case MessageType.OpenReject:
      fields(3);
      return { type, shareA: bytes(f[0], 'shareA', 32), reason: small(f[1], 'reason', reasons) as RejectReason, sig: sig(f[2], 'sig') };
    case MessageType.Update:
      fields(6);
      return { type, ...updateFields(f) };
    case MessageType.UpdateAccept:
      fields(3);
      return { type, alias: alias(f[0]), version: uint64(f[1], 'version'), sig: sig(f[2], 'sig') };
    case MessageType.UpdateReject:
      fields(4);
      return {
        type,
        alias: alias(f[0]),
        version: uint64(f[1], 'version'),
        reason: small(f[2], 'reason', reasons) as RejectReason,
        sig: sig(f[3], 'sig'),
      };
    case MessageType.Sync: {
      fields(3);
      const cur = array(f[1], 'current', 6, 6);
      const staged = f[2] === null ? null : array(f[2], 'staged', 5, 5);
      return {
        type,
        alias: alias(f[0]),
        current: { ...stateBody(cur, 'current'), sigs: [sig(cur[4], 'current.sigs[0]'), sig(cur[5], 'current.sigs[1]')] },
        staged: staged ? { ...stateBody(staged, 'staged'), sig: sig(staged[4], 'staged.sig') } : null,
      };
    }
    case MessageType.FundRequest: {
      fields(7);
      const vc = array(f[6], 'vc', 7, 7);
      return {
        type,
        ...updateFields(f),
        vc: {
          peer: address(vc[0], 'vc.peer'),
          index: small(vc[1], 'vc.index', [0, 1]) as 0 | 1,
          challengeDuration: uint64(vc[2], 'vc.challengeDuration'),
          nonce: uint256(vc[3], 'vc.nonce'),
          kind: small(vc[4], 'vc.kind', kinds) as ChannelKind,
          balances: balances(vc[5], 'vc.balances'),
          sig: vc[6] === null ? null : sig(vc[6], 'vc.sig'),
        },
      };
    }
    case MessageType.SettleRequest: {
      fields(7);
      const vc = array(f[6], 'vc', 5, 5);
      return {
        type,
        ...updateFields(f),
        vc: {
          id: bytes(vc[0], 'vc.id', 32),
          version: uint64(vc[1], 'vc.version'),
          balances: balances(vc[2], 'vc.balances'),
          sigs: [sig(vc[3], 'vc.sigs[0]'), sig(vc[4], 'vc.sigs[1]')],
        },
      };
    }
    case MessageType.ClaimRequest: {
      fields(7);
      const vc = array(f[6], 'vc', 3, 3);
      return { type, ...updateFields(f), vc: { id: bytes(vc[0], 'vc.id', 32), cumulative: uint256(vc[1], 'vc.cumulative'), sig: sig(vc[2], 'vc.sig') } };
    }
    case MessageType.Voucher:
      fields(3);
      return { type, alias: alias(f[0]), cumulative: uint256(f[1], 'cumulative'), sig: sig(f[2], 'sig') };
    case MessageType.VoucherAck:
      fields(2);
      return { type, alias: alias(f[0]), cumulative: uint256(f[1], 'cumulative') };
    case MessageType.CloseRequest:
      fields(3);
      return { type, alias: alias(f[0]), cumulative: uint256(f[1], 'cumulative'), sig: sig(f[2], 'sig') };
    default:
      throw new UnknownMessageTypeError(type);
  }
}

/**
 * Decodes one frame from a peer. The size is checked before decoding and the schema
 * after; every failure is a WireError, never anything untyped.
 */
export function decodeMessage(frame: Uint8Array, limit = MAX_MESSAGE_BYTES): Message {
  if (frame.length > limit) throw new MessageTooLargeError(frame.length, limit);
  let value: unknown;
  try {
    value = cbor.decode(frame);
  } catch (cause) {
    throw new MalformedMessageError('not a CBOR item', { cause });
  }
  try {
    const [version, type, ...fields] = array(value, 'envelope', 2, 16);
    if (version !== PROTOCOL_VERSION) throw new UnsupportedVersionError(version);
    return fromArray(type, fields);
  } catch (err) {
    if (err instanceof PicopayError) throw err;
    throw new MalformedMessageError('unexpected structure', { cause: err });
  }
}
