import { announce, integer, parseOptions, usage } from '../src/cli/args.ts';
import { formatEth } from '../src/cli/units.ts';
import { ConfigError } from '../src/errors.ts';
import { BluezCentral } from '../src/transport/ble/bluez/central.ts';

// `picopay nearby`: the picopay payees advertising within BLE range, through BlueZ.

const SPECS = {
  adapter: { type: 'string', arg: 'NAME', help: 'the BlueZ adapter to scan with', default: 'hci0' },
  seconds: { type: 'string', arg: 'N', help: 'how long to listen', default: '5' },
  json: { type: 'boolean', help: 'one JSON line per payee instead of a table' },
} as const;

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv, SPECS);
  if (o.help) {
    process.stdout.write(
      usage('nearby', 'Lists the picopay payees advertising nearby: address, name, price per payment (the payee’s claim: a payer pays the --amount it chooses) and signal. Needs bluetoothd.', SPECS, ['picopay nearby --adapter hci0 --seconds 5']),
    );
    return;
  }
  const seconds = integer(o.seconds, 'seconds')!;
  if (seconds < 1 || seconds > 600) throw new ConfigError('--seconds must be between 1 and 600');
  const central = new BluezCentral({ adapter: o.adapter! });
  process.stderr.write(`listening for ${seconds} s on ${o.adapter}…\n`);
  try {
    const found = await central.scan(seconds * 1000);
    found.sort((a, b) => (b.rssi ?? -999) - (a.rssi ?? -999));
    for (const s of found) {
      if (o.json) announce('payee', { address: s.address, name: s.name, price: s.price, rssi: s.rssi });
      else process.stdout.write(`${s.address}  ${s.name.padEnd(16)}  ${formatEth(s.price).padStart(14)} per payment  ${s.rssi === null ? 'signal ?' : `${s.rssi} dBm`}\n`);
    }
    if (found.length === 0) process.stderr.write('no picopay payee heard\n');
  } finally {
    await central.stop();
  }
}
