import { Signer } from '../src/crypto/keys.ts';
import { verifyDigest } from '../src/crypto/verify.ts';
import { keccak } from '../src/model/hash.ts';

/**
 * The pure secp256k1 cost, measured in the same process as what it is compared with: in
 * slices taken between slices of the real work, so that machine load weighs on both alike.
 */
export class SigningClock {
  rounds = 0;
  signMs = 0;
  verifyMs = 0;
  readonly #signer = Signer.random();

  /** Signs `rounds` digests, then verifies them: each timed on its own. */
  slice(rounds: number): void {
    const digests = Array.from({ length: rounds }, (_, i) => keccak(new Uint8Array([this.rounds & 255, (this.rounds >> 8) & 255, i & 255, i >> 8])));
    const t0 = performance.now();
    const sigs = digests.map((d) => this.#signer.sign(d));
    const t1 = performance.now();
    for (let i = 0; i < rounds; i++) if (!verifyDigest(sigs[i]!, digests[i]!, this.#signer.publicKey)) throw new Error('bad signature');
    const t2 = performance.now();
    this.signMs += t1 - t0;
    this.verifyMs += t2 - t1;
    this.rounds += rounds;
  }

  get signUs(): number {
    return (1000 * this.signMs) / this.rounds;
  }

  get verifyUs(): number {
    return (1000 * this.verifyMs) / this.rounds;
  }

  /** A stream payment: the payer signs while the payee verifies the previous one. */
  get streamBoundPerSec(): number {
    return 1e6 / Math.max(this.signUs, this.verifyUs);
  }

  /** A bidirectional update: proposal and acceptance, each signed and verified, one after the other. */
  get bidiBoundPerSec(): number {
    return 1e6 / (2 * this.signUs + 2 * this.verifyUs);
  }
}
