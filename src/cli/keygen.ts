import { writeKeystore } from '../crypto/keystore.ts';
import { Signer } from '../crypto/keys.ts';
import { announce, parseOptions, required, usage } from './args.ts';

const SPECS = {
  out: { type: 'string', arg: 'FILE', help: 'where to write the keystore (must not exist)' },
  'password-env': { type: 'string', arg: 'NAME', help: 'environment variable holding the password', default: 'PICOPAY_PASSWORD' },
} as const;

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv, SPECS);
  if (o.help) {
    process.stdout.write(usage('keygen', 'Generates a secp256k1 key on this machine and writes it as an Ethereum V3 keystore (scrypt, mode 0600).', SPECS, ['PICOPAY_PASSWORD=secret picopay keygen --out ~/.picopay/key.json']));
    return;
  }
  const signer = Signer.random();
  writeKeystore(required(o.out, 'out'), signer, process.env[o['password-env'] ?? 'PICOPAY_PASSWORD'] ?? '');
  announce('key', { address: signer.address, file: o.out });
}
