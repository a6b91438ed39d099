import { describe, expect, it } from 'vitest';
import { runChaos } from './suite.ts';

// The chaos suite, bounded for `npm test` (a fixed seed, a few runs); `npm run chaos` runs
// it longer. Each run injects one fault drawn from its seed (harness.ts) and must end, with
// no help, with every party paid exactly its due on-chain and nothing locked.

const SEED = Number(process.env.CHAOS_SEED ?? 20261201);
const RUNS = Number(process.env.CHAOS_RUNS ?? 4);

describe('chaos', () => {
  it(`${RUNS} runs from seed ${SEED}: each recovers by itself and no funds are lost`, async () => {
    const summary = await runChaos(RUNS, SEED);
    expect(summary.reports.filter((r) => !r.recovered).map((r) => `seed ${r.seed}: ${r.problems.join('; ')}`)).toEqual([]);
    expect(summary.lost).toBe(0n);
  }, 1_200_000);
});
