import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ChannelRecord } from '../channel/record.ts';
import { ChannelKind, NATIVE_ASSET, type State } from '../model/types.ts';
import { kindRule, receiveOnly, reliesOn } from './rules.ts';

// The Agent's fixed rules, one property or example each.

function state(balances: [bigint, bigint], isFinal = false): State {
  return { channelId: `0x${'11'.repeat(32)}`, version: 1n, outcome: { assets: [NATIVE_ASSET], balances: [balances], locked: [] }, isFinal };
}

function record(idx: 0 | 1, kind: ChannelKind, current: [bigint, bigint], extra: Partial<ChannelRecord> = {}): ChannelRecord {
  return { idx, params: { kind }, current: { state: state(current), sigs: [null, null] }, ...extra } as ChannelRecord;
}

const amount = fc.bigInt({ min: 0n, max: 10n ** 20n });

describe('client rules', () => {
  it('the default policy accepts exactly the updates that lower none of this side\'s balances', () => {
    fc.assert(
      fc.property(fc.constantFrom(0 as const, 1 as const), amount, amount, amount, amount, (idx, a, b, c, d) => {
        const channel = record(idx, ChannelKind.Ledger, [a, b]);
        const proposed = state([c, d]);
        const mine = (s: State): bigint => s.outcome.balances[0]![idx];
        expect(receiveOnly({ channel, current: channel.current.state, proposed })).toBe(mine(proposed) >= mine(channel.current.state));
      }),
    );
  });

  it('the default policy refuses a peer\'s update that alters one of this side\'s locks, even to its apparent gain', () => {
    const lock = { id: `0x${'22'.repeat(32)}` as const, balances: [30n], indexMap: [0, 1] as const };
    const current: State = { ...state([50n, 50n]), outcome: { ...state([50n, 50n]).outcome, locked: [lock] } };
    const channel = { ...record(0, ChannelKind.Ledger, [50n, 50n]), current: { state: current, sigs: [null, null] } } as ChannelRecord;
    const altered = (l: typeof lock | { id: `0x${string}`; balances: bigint[]; indexMap: readonly [number, number] }): State => ({ ...current, outcome: { ...current.outcome, locked: [l] } });
    expect(receiveOnly({ channel, current, proposed: altered({ ...lock, indexMap: [1, 0] }) })).toBe(false);
    expect(receiveOnly({ channel, current, proposed: altered({ ...lock, balances: [31n] }) })).toBe(false);
    expect(receiveOnly({ channel, current, proposed: altered(lock) })).toBe(true);
  });

  it('a stream payee signs only the final state, paying it at least its highest voucher', () => {
    const payee = record(1, ChannelKind.Stream, [100n, 0n], { voucher: { cumulative: 30n, sig: new Uint8Array(65) }, virtual: { gateway: '0x00', parent: '0x00' } } as Partial<ChannelRecord>);
    expect(kindRule(payee, state([70n, 30n], true))).toBe(true);
    expect(kindRule(payee, state([71n, 29n], true))).toBe(false);
    expect(kindRule(payee, state([70n, 30n]))).toBe(false);
    expect(kindRule(record(0, ChannelKind.Stream, [100n, 0n]), state([70n, 30n], true))).toBe(false);
    expect(kindRule(record(0, ChannelKind.Virtual, [5n, 5n]), state([9n, 1n]))).toBe(true);
  });

  it('a countersignature must be stored durably when the state pays this side more, or ends the channel', () => {
    const rec = record(0, ChannelKind.Ledger, [50n, 50n]);
    expect(reliesOn(rec, state([40n, 60n]))).toBe(false);
    expect(reliesOn(rec, state([60n, 40n]))).toBe(true);
    expect(reliesOn(rec, state([40n, 60n], true))).toBe(true);
  });
});
