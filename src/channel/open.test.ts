import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { InvalidTermsError } from '../errors.ts';
import { MAX_CHALLENGE_DURATION, MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { domainSeparator, openDigest, toHex } from '../model/hash.ts';
import { type Address, ChannelKind } from '../model/types.ts';
import { MessageType, type OpenPropose } from '../wire/messages.ts';
import { acceptOpen, proposeOpen } from './open.ts';
import { virtualParams } from './virtual.ts';

// Challenge durations outside the adjudicator's bounds (which it would clamp, so the
// params would not say what the chain enforces) are refused before anything is signed.

const CHAIN = { chainId: 31337n, adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3' as Address };
const ETH = '0x0000000000000000000000000000000000000000' as Address;
const outOfBounds = fc.oneof(fc.bigInt({ min: 0n, max: MIN_CHALLENGE_DURATION - 1n }), fc.bigInt({ min: MAX_CHALLENGE_DURATION + 1n, max: (1n << 64n) - 1n }));
const inBounds = fc.bigInt({ min: MIN_CHALLENGE_DURATION, max: MAX_CHALLENGE_DURATION });

/** A proposal signed as proposeOpen would, but without its checks: what a hostile peer sends. */
function rawProposal(signer: Signer, peer: Address, challengeDuration: bigint): OpenPropose {
  const share = randomBytes(32);
  const outcome = { assets: [ETH], balances: [[1n, 1n]] as const, locked: [] };
  const sig = signer.sign(openDigest(domainSeparator(CHAIN), { share: toHex(share), participants: [signer.address, peer], challengeDuration, kind: ChannelKind.Ledger, outcome }));
  return { type: MessageType.OpenPropose, share, challengeDuration, kind: ChannelKind.Ledger, assets: outcome.assets, balances: outcome.balances, sig, gateway: null };
}

describe('challenge duration bounds', () => {
  it('a proposer refuses to sign terms outside the bounds, and signs those inside', () => {
    const [a, b] = [Signer.random(), Signer.random()];
    const terms = (challengeDuration: bigint) => ({ peer: b.address, ...CHAIN, challengeDuration, kind: ChannelKind.Ledger, assets: [ETH], balances: [[1n, 1n]] as [[bigint, bigint]] });
    fc.assert(fc.property(outOfBounds, (d) => {
      expect(() => proposeOpen(a, terms(d))).toThrow(InvalidTermsError);
    }));
    fc.assert(fc.property(inBounds, (d) => {
      expect(proposeOpen(a, terms(d)).message.challengeDuration).toBe(d);
    }));
  });

  it('an accepter refuses a signed proposal outside the bounds and signs nothing', () => {
    const [a, b] = [Signer.random(), Signer.random()];
    let signed = 0;
    const counting = Object.assign(Object.create(b) as Signer, {
      sign: (digest: Uint8Array) => {
        signed++;
        return b.sign(digest);
      },
    });
    fc.assert(fc.property(outOfBounds, (d) => {
      expect(() => acceptOpen(counting, rawProposal(a, b.address, d), a.address, CHAIN)).toThrow(InvalidTermsError);
    }));
    expect(signed).toBe(0);
  });

  it('an intermediary refuses virtual-channel terms outside the bounds', () => {
    const [a, b] = [Signer.random(), Signer.random()];
    const terms = (challengeDuration: bigint) => ({ peer: b.address, index: 0 as const, challengeDuration, nonce: 1n, kind: ChannelKind.Stream });
    fc.assert(fc.property(outOfBounds, (d) => {
      expect(() => virtualParams(a.address, terms(d), CHAIN)).toThrow(InvalidTermsError);
    }));
    fc.assert(fc.property(inBounds, (d) => {
      expect(virtualParams(a.address, terms(d), CHAIN).challengeDuration).toBe(d);
    }));
  });
});
