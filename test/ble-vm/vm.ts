import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

// Boots the qemu guest (test/ble-vm/run-vm.sh) with the cache prepare.sh built, runs one
// guest script there and gives back its exit code, its console and the folder it shares.

const HERE = import.meta.dirname;
export const VM_CACHE = process.env.BLE_VM_CACHE ?? join(homedir(), '.cache', 'picopay-ble-vm');

/** Why the guest cannot boot here, or null when it can. */
function vmMissing(): string | null {
  if (!existsSync(join(VM_CACHE, 'initramfs.gz'))) return `no guest cache in ${VM_CACHE} (run test/ble-vm/prepare.sh)`;
  const qemu = (process.env.PATH ?? '').split(':').some((dir) => existsSync(join(dir, 'qemu-system-x86_64')));
  return qemu ? null : 'qemu-system-x86_64 is not installed';
}

/**
 * For a file of guest tests: why the guest cannot boot here (null when it can), which in CI
 * is an error, not a reason to skip; guests a failed test left running are killed after it.
 */
export function guestTests(): string | null {
  const missing = vmMissing();
  if (missing && process.env.CI) throw new Error(`the BLE guest cannot run in CI: ${missing}`);
  afterEach(killGuests);
  return missing;
}

export interface GuestRun {
  code: number | null;
  console: string;
  /** The folder shared with the guest (read-write there as BLE_VM_OUT). */
  out: string;
}

/** A fresh folder to share with the guest; fill it before `runGuest`. */
export function guestFolder(): string {
  return mkdtempSync(join(tmpdir(), 'picopay-ble-vm-'));
}

const running = new Set<ReturnType<typeof spawn>>();

/** Kills every guest still running (a test that failed half-way leaves none behind). */
function killGuests(): void {
  for (const vm of running) vm.kill('SIGKILL');
}

/** Runs `script` (a file in test/ble-vm) in the guest; the VM is killed after `timeoutMs`. */
export function runGuest(script: string, out: string, timeoutMs: number, env: Record<string, string> = {}): Promise<GuestRun> {
  return new Promise((resolve, reject) => {
    const vm = spawn(join(HERE, 'run-vm.sh'), [join(HERE, script), out, VM_CACHE], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    running.add(vm);
    let log = '';
    vm.stdout.on('data', (d) => (log += d));
    vm.stderr.on('data', (d) => (log += d));
    const timer = setTimeout(() => {
      vm.kill('SIGKILL');
      reject(new Error(`the guest did not finish in ${timeoutMs} ms:\n${log.slice(-4000)}`));
    }, timeoutMs);
    vm.on('exit', (code) => {
      running.delete(vm);
      clearTimeout(timer);
      resolve({ code, console: log, out });
    });
  });
}
