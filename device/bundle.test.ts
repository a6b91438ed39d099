import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundleDevice, DEVICE_BUNDLE } from './bundle.ts';

// The lean device build: one file, no tsx, no viem, no chain or gateway code; it runs.
// (test/e2e/restarts.test.ts runs its payer and hotspot from it.)

describe('the device bundle', () => {
  const outfile = join(DEVICE_BUNDLE, '..', 'picopay-device.test.mjs');

  it('holds no viem, tsx, chain, gateway or contract code, and runs: --help, and a user mistake in one line', async () => {
    const meta = await bundleDevice(outfile);
    const inputs = Object.keys(meta.inputs);
    expect(inputs.filter((f) => /node_modules\/(viem|tsx)\//.test(f) || /^(src\/chain|gateway|contracts)\//.test(f))).toEqual([]);
    expect(inputs.some((f) => f.startsWith('device/'))).toBe(true);
    const help = spawnSync(process.execPath, [outfile, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Usage: picopay device');
    const wrong = spawnSync(process.execPath, [outfile, '--role', 'juggler'], { encoding: 'utf8', env: { ...process.env, PICOPAY_LOG: 'silent' } });
    expect(wrong.status).toBe(2);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toContain('[CONFIG]');
  }, 60_000);
});
