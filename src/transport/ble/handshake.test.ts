import { describe, expect, it } from 'vitest';
import { Signer } from '../../crypto/keys.ts';
import { MalformedMessageError, WrongPeerError } from '../../errors.ts';
import { CentralHandshake, type LinkMessage, PeripheralHandshake } from './handshake.ts';

const [alice, bob, mallory] = [Signer.random(), Signer.random(), Signer.random()];

/** Runs a whole handshake between a central and a peripheral; returns both sides. */
function link(central: Signer, peripheral: Signer, expected = peripheral.address) {
  const p = new PeripheralHandshake(peripheral);
  const c = new CentralHandshake(central, expected);
  const proof = c.receive(p.start())!;
  const answer = p.receive(proof);
  expect(c.receive(answer)).toBeNull();
  return { p, c, proof, answer };
}

describe('BLE link handshake', () => {
  it('binds the link to both keys', () => {
    const { p, c } = link(alice, bob);
    expect(p.peer).toBe(alice.address);
    expect(c.peer).toBe(bob.address);
  });

  it('refuses a central naming a key it does not hold', () => {
    const p = new PeripheralHandshake(bob);
    const c = new CentralHandshake(mallory, bob.address);
    const proof = c.receive(p.start()) as Extract<LinkMessage, { t: 'proof' }>;
    expect(() => p.receive({ ...proof, from: alice.address })).toThrow(WrongPeerError);
    expect(p.peer).toBeNull();
  });

  it('refuses a central proof replayed on another link, or sent to another peripheral', () => {
    const { proof } = link(alice, bob);
    expect(() => new PeripheralHandshake(bob).receive(proof)).toThrow(WrongPeerError);
    expect(() => new PeripheralHandshake(mallory).receive(proof)).toThrow(WrongPeerError);
  });

  it('refuses a peripheral that is not the one the central chose, and a proof reflected back', () => {
    // Mallory poses as bob: alice's proof names bob, so mallory cannot take it as hers...
    const p = new PeripheralHandshake(mallory);
    const c = new CentralHandshake(alice, bob.address);
    const proof = c.receive(p.start())!;
    expect(() => p.receive(proof)).toThrow(WrongPeerError);
    // ...and an answer signed with her own key is not bob's.
    const posing = new CentralHandshake(alice, bob.address);
    const relayed = new PeripheralHandshake(mallory);
    posing.receive(relayed.start());
    expect(() => posing.receive({ t: 'proof', from: bob.address, sig: mallory.sign(new Uint8Array(32)) })).toThrow(WrongPeerError);
    expect(posing.peer).toBeNull();
    // The central's own proof sent back to it as the peripheral's: signed for the other role.
    const q = new PeripheralHandshake(bob);
    const d = new CentralHandshake(alice, alice.address);
    const own = d.receive(q.start())!;
    expect(() => d.receive(own)).toThrow(WrongPeerError);
  });

  it('a relay in the middle can pass the messages on (or drop them), never bind the link to itself', () => {
    // Mallory relays bob's challenge and both proofs unchanged: alice and bob are bound to each other.
    const p = new PeripheralHandshake(bob);
    const c = new CentralHandshake(alice, bob.address);
    const answer = p.receive(c.receive(p.start())!);
    c.receive(answer);
    expect([p.peer, c.peer]).toEqual([alice.address, bob.address]);
    // Her own proof in alice's place is refused: bob's nonce was signed for alice's key only.
    const q = new PeripheralHandshake(bob);
    const e = new CentralHandshake(alice, bob.address);
    const theirs = e.receive(q.start()) as Extract<LinkMessage, { t: 'proof' }>;
    const forged: LinkMessage = { t: 'proof', from: mallory.address, nonce: theirs.nonce, sig: mallory.sign(new Uint8Array(32)) };
    expect(() => q.receive(forged)).toThrow(WrongPeerError);
  });

  it('refuses malformed and out-of-turn messages, and binds once', () => {
    const p = new PeripheralHandshake(bob);
    expect(() => p.receive({ t: 'challenge', nonce: new Uint8Array(32) })).toThrow(MalformedMessageError);
    expect(() => p.receive({ t: 'proof', from: alice.address, nonce: new Uint8Array(3), sig: new Uint8Array(65) })).toThrow(MalformedMessageError);
    const c = new CentralHandshake(alice, bob.address);
    expect(() => c.receive({ t: 'proof', from: bob.address, sig: new Uint8Array(65) })).toThrow(MalformedMessageError);
    expect(() => c.receive({ t: 'challenge', nonce: new Uint8Array(31) })).toThrow(MalformedMessageError);
    const { p: bound, proof } = link(alice, bob);
    expect(() => bound.receive(proof)).toThrow(MalformedMessageError);
  });
});
