import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCoreBench } from './core.ts';

// `npm run bench`: every benchmark in one run; each prints a table and writes
// bench/results/<name>.json.

await runCoreBench(Number(process.env.PICOPAY_BENCH_UPDATES ?? 1000));

const here = import.meta.dirname;
if (existsSync(join(here, 'gas.ts'))) {
  const { runGasBench } = (await import('./gas.ts')) as { runGasBench: () => Promise<unknown> };
  await runGasBench();
}
const { runVirtualBench } = await import('./virtual.ts');
await runVirtualBench();
const { runGatewayBench } = await import('./gateway.ts');
await runGatewayBench();
const { runDeviceBench } = await import('./device.ts');
await runDeviceBench();
process.exit(0);
