import { SchemaError } from '../errors.ts';
import { MAX_ASSETS, MAX_LOCKED } from '../model/allocation.ts';
import { toHex } from '../model/hash.ts';
import type { Address, SubAlloc } from '../model/types.ts';
import type { Balances, StateBody } from './messages.ts';

// Checks on decoded CBOR values. Each returns the typed value or throws SchemaError naming
// the field, so a rejection says exactly what was wrong.

const UINT64_MAX = (1n << 64n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;

export function array(v: unknown, path: string, min: number, max: number): unknown[] {
  if (!Array.isArray(v)) throw new SchemaError(path, 'expected an array');
  if (v.length < min || v.length > max) throw new SchemaError(path, `expected ${min}..${max} items, got ${v.length}`);
  return v;
}

export function bytes(v: unknown, path: string, length: number): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new SchemaError(path, 'expected a byte string');
  if (v.length !== length) throw new SchemaError(path, `expected ${length} bytes, got ${v.length}`);
  return new Uint8Array(v);
}

export function address(v: unknown, path: string): Address {
  return toHex(bytes(v, path, 20));
}

export function uint(v: unknown, path: string, max: bigint): bigint {
  let x: bigint;
  if (typeof v === 'bigint') x = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) x = BigInt(v);
  else throw new SchemaError(path, 'expected an unsigned integer');
  if (x < 0n || x > max) throw new SchemaError(path, 'integer out of range');
  return x;
}

export const uint64 = (v: unknown, path: string): bigint => uint(v, path, UINT64_MAX);
export const uint256 = (v: unknown, path: string): bigint => uint(v, path, UINT256_MAX);

export function small(v: unknown, path: string, allowed: readonly number[]): number {
  if (typeof v !== 'number' || !allowed.includes(v)) throw new SchemaError(path, `expected one of ${allowed.join(', ')}`);
  return v;
}

export function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') throw new SchemaError(path, 'expected a boolean');
  return v;
}

export function balances(v: unknown, path: string): Balances {
  return array(v, path, 1, MAX_ASSETS).map((pair, i) => {
    const [a, b] = array(pair, `${path}[${i}]`, 2, 2);
    return [uint256(a, `${path}[${i}][0]`), uint256(b, `${path}[${i}][1]`)] as const;
  });
}

export function locked(v: unknown, path: string): SubAlloc[] {
  return array(v, path, 0, MAX_LOCKED).map((entry, i) => {
    const p = `${path}[${i}]`;
    const [id, amounts, i0, i1] = array(entry, p, 4, 4);
    return {
      id: toHex(bytes(id, `${p}.id`, 32)),
      balances: array(amounts, `${p}.balances`, 1, MAX_ASSETS).map((x, j) => uint256(x, `${p}.balances[${j}]`)),
      indexMap: [small(i0, `${p}.indexMap[0]`, [0, 1]), small(i1, `${p}.indexMap[1]`, [0, 1])] as const,
    };
  });
}

/** [version, balances, locked, isFinal] */
export function stateBody(fields: unknown[], path: string): StateBody {
  return {
    version: uint64(fields[0], `${path}.version`),
    balances: balances(fields[1], `${path}.balances`),
    locked: locked(fields[2], `${path}.locked`),
    isFinal: bool(fields[3], `${path}.isFinal`),
  };
}
