import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../src/testing/agents.ts';

// A careless user's device command, run as its own process: every mistake in its options
// is refused with one line and an exit status before anything exists (no key, no ledger
// channel, no deposit asked of the gateway).

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'picopay.js');
const GATEWAY = '0x' + '11'.repeat(20);
const ADJUDICATOR = '0x' + '22'.repeat(20);

async function device(args: string[]): Promise<{ code: number; stderr: string; dataDir: string }> {
  const dataDir = join(tempDir('picopay-careless-'), 'device');
  // The broker does not exist: a command that got as far as connecting would hang, not fail fast.
  const common = ['device', '--data-dir', dataDir, '--gateway', GATEWAY, '--mqtt-url', 'mqtt://127.0.0.1:9', '--chain-id', '31337', '--adjudicator', ADJUDICATOR, '--status-url', 'http://127.0.0.1:9'];
  try {
    await promisify(execFile)(process.execPath, [BIN, ...common, ...args], { timeout: 60_000, env: { ...process.env, PICOPAY_LOG: 'silent' } });
    return { code: 0, stderr: '', dataDir };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr, dataDir };
  }
}

describe('a careless device command is refused before it creates anything', () => {
  it.each([
    ['a payer without --hotspot', ['--role', 'payer', '--proxy-url', 'http://127.0.0.1:8080', '--download', 'http://127.0.0.1:9000/bytes/10'], /--hotspot/],
    ['a payer with a bad --hotspot', ['--role', 'payer', '--hotspot', '0x12', '--proxy-url', 'http://127.0.0.1:8080', '--download', 'http://127.0.0.1:9000/bytes/10'], /hotspot/],
    ['a payer with a --download that is not http', ['--role', 'payer', '--hotspot', GATEWAY, '--proxy-url', 'http://127.0.0.1:8080', '--download', 'ftp://example/x'], /--download/],
  ])('%s', async (_, args, reason) => {
    const r = await device(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(reason as RegExp);
    expect(existsSync(join(r.dataDir, 'key.json'))).toBe(false);
  }, 90_000);

  it('a hotspot whose proxy port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      const r = await device(['--role', 'hotspot', '--proxy-port', String(port)]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/--proxy-port/);
      expect(existsSync(join(r.dataDir, 'key.json'))).toBe(false);
    } finally {
      taken.close();
    }
  }, 90_000);
});

describe('a careless close or watchtower command', () => {
  it.each([
    ['picopay close on a data directory with no key', ['close', '--force', '--rpc-url', 'http://127.0.0.1:9', '--chain-id', '31337', '--adjudicator', ADJUDICATOR]],
    ['picopay watchtower with a --key that does not exist', ['watchtower', '--rpc-url', 'http://127.0.0.1:9', '--chain-id', '31337', '--adjudicator', ADJUDICATOR, '--store', 'x.db']],
  ])('%s: one line, exit 2, no stack', async (_, args) => {
    const dir = tempDir('picopay-careless-');
    const extra = args[0] === 'close' ? ['--data-dir', join(dir, 'device')] : ['--key', join(dir, 'none.json')];
    const r = await promisify(execFile)(process.execPath, [BIN, ...args, ...extra], { timeout: 60_000, env: { ...process.env, PICOPAY_LOG: 'silent' } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no keystore at .*KEYSTORE/);
  });
});

