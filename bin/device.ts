import { main } from '../device/cli.ts';
import { runCommand } from '../src/cli/run.ts';

// The lean device build's entry (device/bundle.ts): `picopay device`, and `picopay nearby`
// as `nearby` first, so that the bundle holds no gateway, chain or contract code.

const argv = process.argv.slice(2);
if (argv[0] === 'nearby') await runCommand('nearby', (await import('../device/nearby.ts')).main, argv.slice(1));
else await runCommand('device', main, argv);
