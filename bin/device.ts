import { main } from '../device/cli.ts';
import { runCommand } from '../src/cli/run.ts';

// The lean device build's entry (device/bundle.ts): `picopay device` alone, so that the
// bundle holds no gateway, chain or contract code.

await runCommand('device', main, process.argv.slice(2));
