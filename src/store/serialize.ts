import { StoreError } from '../errors.ts';
import type { ChannelRecord } from '../channel/record.ts';

// Records are stored as JSON (readable with the sqlite3 shell) with two tagged forms:
// bigints as "n:<decimal>" and byte arrays as "b:<hex>". No other string field starts
// with "n:" or "b:" (addresses and ids start with 0x).

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `n:${value}`;
  if (value instanceof Uint8Array) return `b:${Buffer.from(value).toString('hex')}`;
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  if (value.startsWith('n:')) return BigInt(value.slice(2));
  if (value.startsWith('b:')) return new Uint8Array(Buffer.from(value.slice(2), 'hex'));
  return value;
}

export function serialize(value: unknown): string {
  return JSON.stringify(value, replacer);
}

export function deserialize<T>(text: string, what: string): T {
  try {
    return JSON.parse(text, reviver) as T;
  } catch (cause) {
    throw new StoreError(`stored ${what} is corrupt`, { cause });
  }
}

export function deserializeRecord(text: string): ChannelRecord {
  const rec = deserialize<ChannelRecord>(text, 'channel');
  if (!rec || typeof rec.id !== 'string' || !rec.current?.state || !(rec.peerKey instanceof Uint8Array)) {
    throw new StoreError('stored channel record is incomplete');
  }
  return rec;
}
