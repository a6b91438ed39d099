import { runChaos } from './suite.ts';

// `npm run chaos`: the long chaos suite (CHAOS_RUNS runs, default 20, from CHAOS_SEED,
// default a fresh one, printed). Exits 1 if a run did not recover or lost funds.

const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 1e9));
const runs = Number(process.env.CHAOS_RUNS ?? 20);
const summary = await runChaos(runs, seed);
process.exit(summary.recovered === summary.reports.length && summary.lost === 0n ? 0 : 1);
