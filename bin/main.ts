import { runCommand } from '../src/cli/run.ts';

// `picopay <command>`: each command is loaded only when asked for, so a device never
// loads the gateway's chain code.

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ main(argv: string[]): Promise<void> }> }> = {
  gateway: { summary: 'run a gateway: ledger channels with devices, virtual-channel intermediary, chain, broker', load: () => import('../gateway/cli.ts') },
  device: { summary: 'run a device agent: payer (client), hotspot (metered proxy) or payee (near-field, over BLE)', load: () => import('../device/cli.ts') },
  nearby: { summary: 'list the picopay payees advertising within BLE range: address, name, price, signal', load: () => import('../device/nearby.ts') },
  close: { summary: "close this device's ledger channel and take its balance out: with the gateway, else on-chain alone", load: () => import('../device/close.ts') },
  watchtower: { summary: "watch the chain for a device's channels and answer stale registrations", load: () => import('../src/cli/watchtower.ts') },
  broker: { summary: 'run the embedded MQTT broker on its own', load: () => import('../src/cli/broker.ts') },
  keygen: { summary: 'create a key on this machine and store it as a V3 keystore (mode 0600)', load: () => import('../src/cli/keygen.ts') },
};

function help(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `picopay: virtual payment channels for machines\n\nUsage: picopay <command> [options]\n\nCommands:\n${rows.join('\n')}\n\nRun "picopay <command> --help" for a command's options.\n`;
}

const [command, ...argv] = process.argv.slice(2);
if (!command || command === '--help' || command === 'help') {
  process.stdout.write(help());
  process.exit(command ? 0 : 1);
}
const entry = COMMANDS[command];
if (!entry) {
  process.stderr.write(`picopay: unknown command "${command}"\n\n${help()}`);
  process.exit(2);
}
await runCommand(command, (await entry.load()).main, argv);
