import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { InvalidSignatureError } from '../errors.ts';
import { totals, transfer } from '../model/allocation.ts';
import { type Address, ChannelKind, type State } from '../model/types.ts';
import { MessageType, type Sync, type Update, type UpdateAccept, type UpdateReject } from '../wire/messages.ts';
import { acceptOpen, completeOpen, proposeOpen } from './open.ts';
import { openChannel as open2, payBody } from '../testing/channels.ts';
import { bodyOf, type ChannelRecord, digestOf, isFullySigned } from './record.ts';
import { makeSync, receiveSync } from './sync.ts';
import { propose, receiveAccept, receiveReject, receiveUpdate } from './update.ts';

// Resynchronisation as pure functions: after a lost message the two records differ; an
// exchange of Sync messages brings both to the newest fully signed state, and an offer
// not signed by both participants changes nothing.

const ZERO = '0x0000000000000000000000000000000000000000' as Address;
const TOKEN = '0x00000000000000000000000000000000000000aa' as Address;
/** secp256k1's group order: private keys are 1..N-1. */
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** An open channel between A and B: 100 each of ETH, 50 each of a token. */
const openChannel = () =>
  open2([ZERO, TOKEN], [
    [100n, 100n],
    [50n, 50n],
  ]);

function signerFrom(key: bigint): Signer {
  return new Signer(Uint8Array.from(Buffer.from(key.toString(16).padStart(64, '0'), 'hex')));
}

/** `from` pays `amount` and `to` signs it; the acceptance is returned, not delivered. */
function payUnanswered(from: ChannelRecord, sf: Signer, to: ChannelRecord, st: Signer, amount: bigint) {
  const proposal = propose(from, sf, payBody(from, from.current.state, amount));
  const answered = receiveUpdate(to, st, proposal.message);
  if (answered.kind !== 'accepted') throw new Error(`version ${proposal.state.version} not accepted`);
  return { from: proposal.record, to: answered.record, accept: answered.reply, proposal: proposal.message };
}

/** A full payment, every message delivered. */
function pay(from: ChannelRecord, sf: Signer, to: ChannelRecord, st: Signer, amount: bigint) {
  const step = payUnanswered(from, sf, to, st, amount);
  return { from: receiveAccept(step.from, step.accept)!.record, to: step.to };
}

type Msg = Sync | Update | UpdateAccept | UpdateReject;
interface Party {
  rec: ChannelRecord;
  signer: Signer;
}

/**
 * Delivers one message to `self`, as the agent would handle it: a Sync's peer proposal is
 * handled at once as an incoming Update. Returns what `self` sends back.
 */
function deliver(self: Party, msg: Msg): Msg[] {
  const out: Msg[] = [];
  switch (msg.type) {
    case MessageType.Sync: {
      const result = receiveSync(self.rec, self.signer, msg);
      if (result.record) self.rec = result.record;
      out.push(...result.replies);
      if (result.peerProposal) out.push(...deliver(self, result.peerProposal));
      break;
    }
    case MessageType.Update: {
      const result = receiveUpdate(self.rec, self.signer, msg);
      if (result.kind === 'accepted') self.rec = result.record;
      out.push(result.reply);
      break;
    }
    case MessageType.UpdateAccept: {
      const result = receiveAccept(self.rec, msg);
      if (result) self.rec = result.record;
      break;
    }
    case MessageType.UpdateReject: {
      const result = receiveReject(self.rec, self.signer, msg);
      if (result?.kind === 'retry') {
        self.rec = result.proposal.record;
        out.push(result.proposal.message);
      } else if (result) {
        self.rec = result.record;
      }
      break;
    }
  }
  return out;
}

/** Both sides offer a Sync at once; every message that follows is delivered in order, per direction. */
function exchange(a: Party, b: Party): void {
  const toA: Msg[] = [];
  const toB: Msg[] = [];
  const syncA = makeSync(a.rec);
  const syncB = makeSync(b.rec);
  if (syncA) toB.push(syncA);
  if (syncB) toA.push(syncB);
  for (let steps = 0; toA.length > 0 || toB.length > 0; steps++) {
    if (steps > 100) throw new Error('resync does not settle');
    if (toA.length > 0) toB.push(...deliver(a, toA.shift()!));
    if (toB.length > 0) toA.push(...deliver(b, toB.shift()!));
  }
}

/** A deep copy to compare a record against after a call that must not change it. */
function snapshot(rec: ChannelRecord): ChannelRecord {
  return structuredClone(rec);
}

describe('resync after a lost message', () => {
  it("B missed A's acceptance of its proposal: B adopts the state A signed, A keeps it", () => {
    const { a, b, sa, sb } = openChannel();
    const step = payUnanswered(b, sb, a, sa, 30n); // A's acceptance is lost
    expect(step.to.current.state.version).toBe(1n);
    expect(step.from.current.state.version).toBe(0n);
    expect(step.from.staged?.state.version).toBe(1n);

    // A is ahead: B's older offer changes nothing at A, and A answers with its own.
    const atA = receiveSync(step.to, sa, makeSync(step.from)!);
    expect(atA.record).toBeNull();
    expect(atA.adopted).toBeNull();
    expect(atA.replies).toEqual([makeSync(step.to)]);
    // B's staged proposal comes along, to be answered as a repeat of what A already signed.
    expect(atA.peerProposal?.version).toBe(1n);
    expect(receiveUpdate(step.to, sa, atA.peerProposal!).kind).toBe('duplicate');

    const atB = receiveSync(step.from, sb, makeSync(step.to)!);
    expect(atB.adopted).toEqual(step.to.current);
    expect(atB.staged).toBe('completed');
    expect(atB.record?.current).toEqual(step.to.current);
    expect(atB.record?.staged).toBeNull();
    expect(atB.record?.phase).toBe('open');
    expect(atB.record?.current.state.outcome.balances).toEqual([
      [130n, 70n],
      [50n, 50n],
    ]);
  });

  it('after an exchange both ways both sides hold the newest fully signed state, funds conserved, neither regressing', () => {
    const { a: a0, b: b0, sa, sb } = openChannel();
    const paid = pay(a0, sa, b0, sb, 10n);
    const step = payUnanswered(paid.from, sa, paid.to, sb, 15n); // B's acceptance of version 2 is lost
    const a: Party = { rec: step.from, signer: sa };
    const b: Party = { rec: step.to, signer: sb };
    const before = [a.rec.current.state.version, b.rec.current.state.version];
    exchange(a, b);
    expect(a.rec.current).toEqual(b.rec.current);
    expect(isFullySigned(a.rec.current)).toBe(true);
    expect(a.rec.current.state.version).toBe(2n);
    expect(a.rec.current.state.version).toBeGreaterThanOrEqual(before[0]!);
    expect(b.rec.current.state.version).toBeGreaterThanOrEqual(before[1]!);
    expect(a.rec.staged).toBeNull();
    expect(b.rec.staged).toBeNull();
    expect(totals(a.rec.current.state.outcome)).toEqual(totals(a0.current.state.outcome));
    expect(a.rec.current.state.outcome.balances[0]).toEqual([75n, 125n]);
  });

  it('a lost proposal goes out again with the Sync and gets signed', () => {
    const { a: a0, b: b0, sa, sb } = openChannel();
    const lost = propose(a0, sa, payBody(a0, a0.current.state, 5n, 1)); // never reaches B
    const a: Party = { rec: lost.record, signer: sa };
    const b: Party = { rec: b0, signer: sb };
    exchange(a, b);
    expect(a.rec.current).toEqual(b.rec.current);
    expect(a.rec.current.state.version).toBe(1n);
    expect(a.rec.current.state.outcome.balances[1]).toEqual([45n, 55n]);
    expect(a.rec.staged).toBeNull();
  });

  it("an open whose last acceptance was lost is completed by the proposer's Sync", () => {
    const sa = Signer.random();
    const sb = Signer.random();
    const pending = proposeOpen(sa, { peer: sb.address, chainId: 31337n, adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3', challengeDuration: 3600n, kind: ChannelKind.Ledger, assets: [ZERO], balances: [[10n, 10n]] });
    const accepted = acceptOpen(sb, pending.message, sa.address, pending.context.chain);
    const completed = completeOpen(sa, pending, accepted.reply);
    expect(makeSync(accepted.record)).toBeNull(); // B holds no fully signed state yet
    const result = receiveSync(accepted.record, sb, makeSync(completed.record)!);
    expect(result.record?.phase).toBe('open');
    expect(result.record?.current).toEqual(completed.record.current);
  });

  it("a staged proposal the adopted state completes is 'completed'; one it replaces is 'superseded'", () => {
    const { a, b, sa, sb } = openChannel();
    const done = payUnanswered(a, sa, b, sb, 10n);
    const completed = receiveSync(done.from, sa, makeSync(done.to)!);
    expect(completed.staged).toBe('completed');
    expect(completed.record?.staged).toBeNull();

    // A record that stages another change at a version the peer holds fully signed (a
    // stale copy of A's record, say): the adopted state wins, the staged change is gone.
    const other = propose(a, sa, payBody(a, a.current.state, 40n));
    const sameVersion = receiveSync(other.record, sa, makeSync(done.to)!);
    expect(sameVersion.staged).toBe('superseded');
    expect(sameVersion.adopted).toEqual(done.to.current);
    expect(sameVersion.record?.staged).toBeNull();
    expect(sameVersion.record?.current.state.outcome.balances[0]).toEqual([90n, 110n]);
    expect(sameVersion.record?.highestSigned).toBe(1n);

    // ... or below a newer one.
    const later = pay(receiveAccept(done.from, done.accept)!.record, sa, done.to, sb, 1n);
    const below = receiveSync(other.record, sa, makeSync(later.to)!);
    expect(below.staged).toBe('superseded');
    expect(below.record?.current.state.version).toBe(2n);
    expect(below.record?.staged).toBeNull();
    expect(below.record?.highestSigned).toBe(2n);

    // Nothing staged: nothing to report.
    expect(receiveSync(a, sa, makeSync(done.to)!).staged).toBeNull();
  });
});

describe('forged Sync offers', () => {
  /** A Sync offering `state` with the given signatures, as anyone on the broker can send. */
  function offer(rec: ChannelRecord, state: State, sigs: readonly [Uint8Array, Uint8Array]): Sync {
    return { type: MessageType.Sync, alias: makeSync(rec)!.alias, current: { ...bodyOf(state), sigs }, staged: null };
  }

  function expectRefusedUnchanged(rec: ChannelRecord, signer: Signer, msg: Sync): void {
    const before = snapshot(rec);
    let returned: unknown = undefined;
    expect(() => {
      returned = receiveSync(rec, signer, msg);
    }).toThrow(InvalidSignatureError);
    expect(returned).toBeUndefined();
    expect(rec).toEqual(before);
  }

  it('an offer not signed by both participants throws and changes nothing', () => {
    const { a, b, sa, sb } = openChannel();
    const done = payUnanswered(a, sa, b, sb, 10n); // B holds version 1 signed by both
    const genuine = makeSync(done.to)!;
    const state = done.to.current.state;
    const [sigA, sigB] = done.to.current.sigs as readonly [Uint8Array, Uint8Array];
    const mallory = Signer.random();
    const byMallory = mallory.sign(digestOf(a, state));
    // The genuine offer is adopted (the forgeries below differ from it in one thing only).
    expect(receiveSync(done.from, sa, genuine).adopted).toEqual(done.to.current);

    // A random key in the peer's slot, or in A's own.
    expectRefusedUnchanged(done.from, sa, offer(a, state, [sigA, byMallory]));
    expectRefusedUnchanged(done.from, sa, offer(a, state, [byMallory, sigB]));
    // Only one valid signature: the peer's twice, or the slots swapped.
    expectRefusedUnchanged(done.from, sa, offer(a, state, [sigB, sigB]));
    expectRefusedUnchanged(done.from, sa, offer(a, state, [sigB, sigA]));
    // The same signatures on a higher version, or on other balances.
    expectRefusedUnchanged(done.from, sa, { ...genuine, current: { ...genuine.current, version: 2n } });
    expectRefusedUnchanged(done.from, sa, { ...genuine, current: { ...genuine.current, balances: [[80n, 120n], [50n, 50n]] } });
    // A state only the peer signed (its own proposal), with a made-up signature for A.
    const peerOnly = propose(done.to, sb, payBody(done.to, state, 5n));
    expectRefusedUnchanged(done.from, sa, offer(a, peerOnly.state, [new Uint8Array(65), peerOnly.message.sig]));
    expectRefusedUnchanged(done.from, sa, offer(a, peerOnly.state, [peerOnly.message.sig, peerOnly.message.sig]));
    // A state only A signed (its staged proposal) with a made-up acceptance.
    expectRefusedUnchanged(done.from, sa, offer(a, done.from.staged!.state, [done.from.staged!.sig, byMallory]));
  });

  it('property: an offer above the current version with a signature by any other key throws, the record unchanged', () => {
    const { a, b, sa, sb } = openChannel();
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: N - 1n }),
        fc.bigInt({ min: 1n, max: 1000n }),
        fc.bigInt({ min: 0n, max: 200n }),
        fc.constantFrom<'peer' | 'own' | 'both'>('peer', 'own', 'both'),
        (key, ahead, split, slot) => {
          const forger = signerFrom(key);
          const state: State = { ...a.current.state, version: a.current.state.version + ahead, outcome: { ...a.current.state.outcome, balances: [[split, 200n - split], [50n, 50n]] } };
          const digest = digestOf(a, state);
          const fake = forger.sign(digest);
          const sigs: [Uint8Array, Uint8Array] = slot === 'peer' ? [sa.sign(digest), fake] : slot === 'own' ? [fake, sb.sign(digest)] : [fake, fake];
          // A and B never both signed it: whichever slot holds another key, it is refused.
          expectRefusedUnchanged(a, sa, offer(a, state, sigs));
          expectRefusedUnchanged(b, sb, offer(b, state, sigs));
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('resync property', () => {
  type Loss = 'none' | 'update' | 'accept';
  const step = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('pay' as const), from: fc.constantFrom<0 | 1>(0, 1), amount: fc.bigInt({ min: 0n, max: 60n }), asset: fc.constantFrom(0, 1), loss: fc.constantFrom<Loss>('none', 'none', 'update', 'accept') }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'resync' as const }) },
  );

  it('random payments with lost messages, then a Sync exchange both ways: both hold the same state, every payment once, funds conserved', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 10 }), (steps) => {
        const { a, b, sa, sb } = openChannel();
        const parties: [Party, Party] = [
          { rec: a, signer: sa },
          { rec: b, signer: sb },
        ];
        const total = totals(a.current.state.outcome);
        // What the balances must end as: every payment that went out, once.
        let expected = a.current.state.outcome;
        const check = (before: ChannelRecord[]) => {
          parties.forEach((p, i) => {
            expect(totals(p.rec.current.state.outcome)).toEqual(total);
            expect(p.rec.current.state.version).toBeGreaterThanOrEqual(before[i]!.current.state.version);
            expect(p.rec.highestSigned).toBeGreaterThanOrEqual(before[i]!.highestSigned);
            expect(isFullySigned(p.rec.current)).toBe(true);
          });
        };
        for (const s of steps) {
          const before = parties.map((p) => p.rec);
          if (s.kind === 'resync') {
            exchange(parties[0], parties[1]);
          } else {
            const [p, q] = s.from === 0 ? [parties[0], parties[1]] : [parties[1], parties[0]];
            // One update in flight: a side waits for the resync before paying again.
            if (p.rec.staged || q.rec.staged) continue;
            const amount = s.amount <= p.rec.current.state.outcome.balances[s.asset]![p.rec.idx] ? s.amount : 0n;
            const proposal = propose(p.rec, p.signer, payBody(p.rec, p.rec.current.state, amount, s.asset));
            p.rec = proposal.record;
            expected = transfer(expected, p.rec.idx, amount, s.asset);
            if (s.loss === 'update') continue;
            const answered = receiveUpdate(q.rec, q.signer, proposal.message);
            expect(answered.kind).toBe('accepted');
            if (answered.kind !== 'accepted') return;
            q.rec = answered.record;
            if (s.loss === 'accept') continue;
            p.rec = receiveAccept(p.rec, answered.reply)!.record;
          }
          check(before);
        }
        const before = parties.map((p) => p.rec);
        const newest = parties.reduce((max, p) => {
          const v = p.rec.staged && p.rec.staged.state.version > p.rec.current.state.version ? p.rec.staged.state.version : p.rec.current.state.version;
          return v > max ? v : max;
        }, 0n);
        exchange(parties[0], parties[1]);
        check(before);
        const [ra, rb] = [parties[0].rec, parties[1].rec];
        expect(ra.current).toEqual(rb.current);
        expect(ra.current.state.version).toBe(newest);
        expect(ra.current.state.outcome.balances).toEqual(expected.balances);
        expect(ra.staged).toBeNull();
        expect(rb.staged).toBeNull();
        // Settled: another exchange changes nothing.
        expect(receiveSync(ra, sa, makeSync(rb)!).record).toBeNull();
        expect(receiveSync(rb, sb, makeSync(ra)!).record).toBeNull();
      }),
      { numRuns: 50 },
    );
  });
});
