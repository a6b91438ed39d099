import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { InvalidAllocationError, InvalidSignatureError, ProtocolError } from '../errors.ts';
import { channelId } from '../model/channelId.ts';
import { MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { domainSeparator, fromHex, stateDigest, voucherDigest } from '../model/hash.ts';
import { ChannelKind, NATIVE_ASSET, type Params, type State } from '../model/types.ts';
import { assertEvidencedLocks, checkClaim, checkFunding, checkRelease, type FundedVirtual, lockDiff, type ParentRequest } from './intermediary.ts';
import type { ChannelRecord } from './record.ts';
import { claimBalances, feeOutcome, initialVirtualState, lockOutcome, unlockOutcome } from './virtual.ts';

const CHAIN = { chainId: 31337n, adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3' as const };
const [device, other, gateway] = [Signer.random(), Signer.random(), Signer.random()];

/** G's ledger channel with the device, [device's, G's] = [100, 100], and the device's request to lock a virtual channel. */
function fundingRequest(balances: [bigint, bigint], fee: bigint, kind: ChannelKind = ChannelKind.Virtual) {
  const parentParams: Params = { ...CHAIN, participants: [device.address, gateway.address], challengeDuration: MIN_CHALLENGE_DURATION, nonce: 1n, kind: ChannelKind.Ledger };
  const current: State = { channelId: channelId(parentParams), version: 3n, outcome: { assets: [NATIVE_ASSET], balances: [[100n, 100n]], locked: [] }, isFinal: false };
  const channel = { id: current.channelId, params: parentParams, idx: 1, peer: device.address } as ChannelRecord;
  const vc: Params = { ...CHAIN, participants: [device.address, other.address], challengeDuration: MIN_CHALLENGE_DURATION, nonce: 9n, kind };
  const v0 = initialVirtualState(vc, [NATIVE_ASSET], [balances]);
  const terms = { peer: other.address, index: 0 as const, challengeDuration: vc.challengeDuration, nonce: vc.nonce, kind, balances: [balances] as const, sig: kind === ChannelKind.Stream ? null : device.sign(stateDigest(domainSeparator(vc), v0)) };
  const outcome = feeOutcome(lockOutcome(current.outcome, parentParams.participants, { id: v0.channelId, participants: vc.participants, balances: [balances] }), 0, fee);
  const req: ParentRequest = { channel, current, proposed: { ...current, version: 4n, outcome } };
  return { req, terms, vc, vcId: v0.channelId };
}

describe('checkFunding', () => {
  it('accepts a request that locks exactly what it describes and pays the fee; refuses every tampered one with a typed error', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 50n }), fc.bigInt({ min: 0n, max: 50n }), fc.bigInt({ min: 0n, max: 3n }), (x, y, fee) => {
        const { req, terms, vc, vcId } = fundingRequest([x, y], fee);
        expect(checkFunding(req, vcId, terms, CHAIN, fee).params).toEqual(vc);
        const refused = (r: ParentRequest, t: typeof terms, f = fee, id = vcId): unknown => {
          try {
            checkFunding(r, id, t, CHAIN, f);
          } catch (err) {
            return err;
          }
          return null;
        };
        expect(refused(req, { ...terms, balances: [[x + 1n, y]] })).toBeInstanceOf(ProtocolError);
        expect(refused(req, { ...terms, sig: other.sign(new Uint8Array(32)) })).toBeInstanceOf(InvalidSignatureError);
        expect(refused(req, { ...terms, peer: device.address })).toBeInstanceOf(ProtocolError);
        expect(refused(req, terms, fee + 1n)).toBeInstanceOf(InvalidAllocationError);
        expect(refused(req, terms, fee, `0x${'00'.repeat(32)}`)).toBeInstanceOf(InvalidAllocationError);
      }),
      { numRuns: 20 },
    );
  });

  it('refuses a stream whose payee starts above zero, which two colluding devices could ask for: a claim or a release would pay it out of the gateway', () => {
    const { req, terms, vcId } = fundingRequest([30n, 5n], 0n, ChannelKind.Stream);
    expect(() => checkFunding(req, vcId, terms, CHAIN, 0n)).toThrow(InvalidAllocationError);
    const fine = fundingRequest([30n, 0n], 0n, ChannelKind.Stream);
    expect(checkFunding(fine.req, fine.vcId, fine.terms, CHAIN, 0n).params.kind).toBe(ChannelKind.Stream);
  });

  it('the match value is the initial outcome: two different claims never match', () => {
    const a = fundingRequest([10n, 5n], 0n);
    const b = fundingRequest([5n, 10n], 0n);
    expect(checkFunding(a.req, a.vcId, a.terms, CHAIN, 0n).match).not.toBe(checkFunding(b.req, b.vcId, b.terms, CHAIN, 0n).match);
  });
});

describe('checkRelease', () => {
  it('accepts a final state both signed and an update releasing per it; refuses one signer, another final, or another split', () => {
    const { req, vc, vcId } = fundingRequest([30n, 0n], 0n);
    const locked: ParentRequest = { ...req, current: req.proposed };
    const funded: FundedVirtual = { id: vcId, params: vc, assets: [NATIVE_ASSET], balances: [[30n, 0n]], sigs: null };
    const final = (balances: [bigint, bigint], signers: [Signer, Signer]) => {
      const state: State = { channelId: vcId, version: 2n, outcome: { assets: [NATIVE_ASSET], balances: [balances], locked: [] }, isFinal: true };
      const digest = stateDigest(domainSeparator(vc), state);
      return { id: Buffer.from(vcId.slice(2), 'hex'), version: 2n, balances: [balances] as const, sigs: [signers[0].sign(digest), signers[1].sign(digest)] as const };
    };
    const release = (balances: [bigint, bigint]): ParentRequest => ({ ...locked, proposed: { ...locked.current, version: 5n, outcome: unlockOutcome(locked.current.outcome, vcId, [balances]) } });
    expect(checkRelease(release([20n, 10n]), funded, final([20n, 10n], [device, other])).match).toContain('2');
    expect(() => checkRelease(release([20n, 10n]), funded, final([20n, 10n], [device, device]))).toThrow(InvalidSignatureError);
    expect(() => checkRelease(release([25n, 5n]), funded, final([20n, 10n], [device, other]))).toThrow(InvalidAllocationError);
    expect(() => checkRelease(release([20n, 10n]), undefined, final([20n, 10n], [device, other]))).toThrow(ProtocolError);
  });
});

describe('assertEvidencedLocks', () => {
  it('lets a parent update change its locks only as its evidence names', () => {
    const { req, terms, vcId } = fundingRequest([10n, 0n], 0n);
    const self = device.address;
    expect(() => assertEvidencedLocks(req.current, req.proposed, { fund: terms }, self, CHAIN)).not.toThrow();
    expect(() => assertEvidencedLocks(req.current, req.proposed, undefined, self, CHAIN)).toThrow(InvalidAllocationError);
    expect(() => assertEvidencedLocks(req.current, req.proposed, { fund: { ...terms, nonce: terms.nonce + 1n } }, self, CHAIN)).toThrow(InvalidAllocationError);
    const final = { id: Buffer.from(vcId.slice(2), 'hex'), version: 1n, balances: [[10n, 0n]] as const, sigs: [new Uint8Array(65), new Uint8Array(65)] as const };
    expect(() => assertEvidencedLocks(req.proposed, req.current, { settle: final }, self, CHAIN)).not.toThrow();
    expect(() => assertEvidencedLocks(req.proposed, req.current, undefined, self, CHAIN)).toThrow(InvalidAllocationError);
    expect(() => assertEvidencedLocks(req.current, req.current, undefined, self, CHAIN)).not.toThrow();
  });
});

describe('lockDiff', () => {
  it('a lock kept under its id but with other amounts or another mapping is altered, and no evidence allows that', () => {
    const { req, terms } = fundingRequest([10n, 0n], 0n);
    const funded = req.proposed;
    const lock = funded.outcome.locked[0]!;
    const shrunk: State = { ...funded, version: 5n, outcome: { ...funded.outcome, balances: [[funded.outcome.balances[0]![0] + 5n, funded.outcome.balances[0]![1]]], locked: [{ ...lock, balances: [lock.balances[0]! - 5n] }] } };
    const swapped: State = { ...funded, version: 5n, outcome: { ...funded.outcome, locked: [{ ...lock, indexMap: [lock.indexMap[1], lock.indexMap[0]] }] } };
    for (const next of [shrunk, swapped]) {
      expect(lockDiff(funded, next)).toEqual({ added: [], removed: [], altered: [lock.id] });
      expect(() => assertEvidencedLocks(funded, next, undefined, device.address, CHAIN)).toThrow(InvalidAllocationError);
      expect(() => assertEvidencedLocks(funded, next, { fund: terms }, device.address, CHAIN)).toThrow(InvalidAllocationError);
    }
    expect(lockDiff(funded, { ...funded, version: 5n })).toEqual({ added: [], removed: [], altered: [] });
  });
});

describe('checkClaim', () => {
  /** G's ledger channel with the payee ([payee's, G's] = [100, 100]) locking a stream from `other` to it, and the payee's claim of `cumulative`. */
  function claimRequest(lock: bigint, cumulative: bigint) {
    const parentParams: Params = { ...CHAIN, participants: [device.address, gateway.address], challengeDuration: MIN_CHALLENGE_DURATION, nonce: 2n, kind: ChannelKind.Ledger };
    const vcParams: Params = { ...CHAIN, participants: [other.address, device.address], challengeDuration: MIN_CHALLENGE_DURATION, nonce: 7n, kind: ChannelKind.Stream };
    const vcId = channelId(vcParams);
    // G stands in for the payer (index 1 in this parent), the payee is itself (index 0).
    const locked = [{ id: vcId, balances: [lock], indexMap: [1, 0] as const }];
    const current: State = { channelId: channelId(parentParams), version: 5n, outcome: { assets: [NATIVE_ASSET], balances: [[100n, 100n - lock]], locked }, isFinal: false };
    const channel = { id: current.channelId, params: parentParams, idx: 1, peer: device.address } as ChannelRecord;
    const vc: FundedVirtual = { id: vcId, params: vcParams, assets: [NATIVE_ASSET], balances: [[lock, 0n]], sigs: null };
    const voucher = (signer: Signer, amount: bigint) => signer.sign(voucherDigest(domainSeparator(vcParams), vcId, amount));
    const release = (amount: bigint) => unlockOutcome(current.outcome, vcId, claimBalances(vc.balances, amount));
    const req: ParentRequest = { channel, current, proposed: { ...current, version: 6n, outcome: release(cumulative) } };
    return { req, vc, claim: { id: fromHex(vcId), cumulative, sig: voucher(other, cumulative) }, voucher, release };
  }

  it("accepts the payee's release per its payer's voucher, capped at the lock; refuses a forged voucher, more than it says, the payer, a bidirectional channel", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 50n }), fc.bigInt({ min: 1n, max: 80n }), (lock, cumulative) => {
        const { req, vc, claim, voucher, release } = claimRequest(lock, cumulative);
        checkClaim(req, vc, claim);
        const paid = cumulative < lock ? cumulative : lock;
        expect(req.proposed.outcome.balances[0]).toEqual([100n + paid, 100n - paid]);
        const refused = (r: ParentRequest, v: FundedVirtual | undefined, c: typeof claim): unknown => {
          try {
            checkClaim(r, v, c);
          } catch (err) {
            return err;
          }
          return null;
        };
        expect(refused(req, vc, { ...claim, sig: voucher(device, cumulative) })).toBeInstanceOf(InvalidSignatureError);
        if (cumulative < lock) expect(refused({ ...req, proposed: { ...req.proposed, outcome: release(cumulative + 1n) } }, vc, claim)).toBeInstanceOf(InvalidAllocationError);
        expect(refused({ ...req, channel: { ...req.channel, peer: other.address } }, vc, claim)).toBeInstanceOf(ProtocolError);
        expect(refused(req, { ...vc, params: { ...vc.params, kind: ChannelKind.Virtual } }, claim)).toBeInstanceOf(InvalidAllocationError);
        expect(refused(req, undefined, claim)).toBeInstanceOf(ProtocolError);
        // A record of a stream with its payee above zero (kept from before this check) is never claimed.
        expect(refused(req, { ...vc, balances: [[lock, 1n]] }, claim)).toBeInstanceOf(InvalidAllocationError);
      }),
      { numRuns: 20 },
    );
  });
});
