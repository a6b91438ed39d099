import { build, type Metafile } from 'esbuild';
import { join } from 'node:path';

// The device agent as one file for a Pi-class board: no tsx at run time, no viem, no
// contract code. Native modules (SQLite, CBOR's fast path) stay outside, loaded from
// node_modules as usual.

const ROOT = join(import.meta.dirname, '..');
export const DEVICE_BUNDLE = join(ROOT, 'dist', 'picopay-device.mjs');

/** Writes the bundle of `entry` (default the device agent) to `outfile`; returns what went into it. */
export async function bundleDevice(outfile = DEVICE_BUNDLE, entry = join(ROOT, 'bin', 'device.ts')): Promise<Metafile> {
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    metafile: true,
    logLevel: 'silent',
    // usocket and x11: dbus-next's optional transports, unused (BlueZ is on the system bus's socket).
    external: ['better-sqlite3', 'cbor-extract', 'usocket', 'x11'],
    // ESM has no require: the CommonJS packages bundled in need one.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  });
  return result.metafile;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const meta = await bundleDevice();
  const bytes = Object.values(meta.outputs).reduce((sum, o) => sum + o.bytes, 0);
  process.stdout.write(`${DEVICE_BUNDLE}: ${(bytes / 1024).toFixed(0)} KB from ${Object.keys(meta.inputs).length} files\n`);
}
