import * as TypedData from 'ox/TypedData';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { domainSeparator, outcomeHash, stateDigest, voucherDigest } from './hash.ts';
import { channelId, nonceFromShares } from './channelId.ts';
import { ChannelKind, NATIVE_ASSET, type State } from './types.ts';

const domain = { chainId: 31337n, adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3' as const };
const state: State = {
  channelId: `0x${'ab'.repeat(32)}`,
  version: 7n,
  outcome: { assets: [NATIVE_ASSET], balances: [[10n, 20n]], locked: [] },
  isFinal: false,
};

describe('EIP-712 digests', () => {
  it('match an independent EIP-712 implementation (ox TypedData)', () => {
    const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `0x${Buffer.from(b).toString('hex')}` as const);
    fc.assert(
      fc.property(bytes32, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.boolean(), fc.bigInt({ min: 1n, max: 1n << 64n }), (id, version, isFinal, chainId) => {
        const d = { chainId, adjudicator: domain.adjudicator };
        const s = { ...state, channelId: id, version, isFinal };
        const expected = TypedData.getSignPayload({
          domain: { name: 'picopay', version: '1', chainId, verifyingContract: d.adjudicator },
          types: { State: [
            { name: 'channelId', type: 'bytes32' },
            { name: 'version', type: 'uint64' },
            { name: 'outcomeHash', type: 'bytes32' },
            { name: 'isFinal', type: 'bool' },
          ] },
          primaryType: 'State',
          message: { channelId: id, version, outcomeHash: outcomeHash(s.outcome), isFinal },
        });
        expect(`0x${Buffer.from(stateDigest(domainSeparator(d), s)).toString('hex')}`).toBe(expected);
      }),
      { numRuns: 50 },
    );
  });

  it('voucher digests match ox TypedData and differ from state digests', () => {
    const expected = TypedData.getSignPayload({
      domain: { name: 'picopay', version: '1', chainId: domain.chainId, verifyingContract: domain.adjudicator },
      types: { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulative', type: 'uint256' }] },
      primaryType: 'Voucher',
      message: { channelId: state.channelId, cumulative: 5n },
    });
    expect(`0x${Buffer.from(voucherDigest(domainSeparator(domain), state.channelId, 5n)).toString('hex')}`).toBe(expected);
  });

  it('binds the chain id and the adjudicator', () => {
    const a = stateDigest(domainSeparator(domain), state);
    const b = stateDigest(domainSeparator({ ...domain, chainId: 1n }), state);
    const c = stateDigest(domainSeparator({ ...domain, adjudicator: '0x0000000000000000000000000000000000000001' }), state);
    expect(a).not.toEqual(b);
    expect(a).not.toEqual(c);
  });
});

describe('channel ids', () => {
  const params = {
    chainId: 31337n,
    adjudicator: domain.adjudicator,
    participants: ['0x0000000000000000000000000000000000000001', '0x0000000000000000000000000000000000000002'] as const,
    challengeDuration: 3600n,
    nonce: nonceFromShares(new Uint8Array(32).fill(1), new Uint8Array(32).fill(2)),
    kind: ChannelKind.Ledger,
  };
  it('change with every param', () => {
    const id = channelId(params);
    expect(channelId({ ...params, chainId: 1n })).not.toBe(id);
    expect(channelId({ ...params, adjudicator: '0x0000000000000000000000000000000000000003' })).not.toBe(id);
    expect(channelId({ ...params, nonce: params.nonce + 1n })).not.toBe(id);
    expect(channelId({ ...params, kind: ChannelKind.Stream })).not.toBe(id);
    expect(channelId({ ...params, challengeDuration: 1n })).not.toBe(id);
  });
  it('nonce depends on both shares in order', () => {
    const a = new Uint8Array(32).fill(1);
    const b = new Uint8Array(32).fill(2);
    expect(nonceFromShares(a, b)).not.toBe(nonceFromShares(b, a));
  });
});
