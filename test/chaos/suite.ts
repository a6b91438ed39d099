import { startOrigin } from '../../device/hotspot/origin.ts';
import { startDevnet } from '../../src/chain/index.ts';
import { chaosRun, describePlan, type Report } from './harness.ts';

// Runs `runs` chaos runs from `seed` (run i uses seed + i) on one anvil and one origin,
// printing each run and the totals: runs, recoveries and funds lost.

export interface Summary {
  seed: number;
  reports: Report[];
  recovered: number;
  lost: bigint;
}

export async function runChaos(runs: number, seed: number, say: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<Summary> {
  say(`chaos: ${runs} run(s) from seed ${seed} (replay one with CHAOS_SEED=<seed> CHAOS_RUNS=1)`);
  const devnet = await startDevnet({ accounts: 3 });
  const origin = await startOrigin();
  const reports: Report[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const report = await chaosRun({ devnet, origin, owner: devnet.clients[1]! }, seed + i);
      reports.push(report);
      const verdict = report.recovered ? 'recovered' : `NOT RECOVERED (${report.problems.join('; ')}) log ${report.log}`;
      say(`  seed ${report.seed}: ${describePlan(report.plan)}: ${verdict}, lost ${report.lost} wei, ${report.seconds.toFixed(0)} s`);
    }
  } finally {
    await origin.close();
    await devnet.stop();
  }
  const recovered = reports.filter((r) => r.recovered).length;
  const lost = reports.reduce((sum, r) => sum + r.lost, 0n);
  say(`chaos: runs ${reports.length}, recoveries ${recovered}, funds lost ${lost} wei`);
  return { seed, reports, recovered, lost };
}
