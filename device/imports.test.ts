import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// A device must not load viem or contract code: walk every import (static and dynamic)
// reachable from the device's entry points and check that none leads there.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const IMPORT = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|import\s*['"]([^'"]+)['"]/g;

function reachable(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  visit(entry);
  return { files, packages };
}

describe('device footprint', () => {
  it('the device agent and its CLI never import viem or src/chain', () => {
    for (const entry of ['device/cli.ts', 'device/service.ts']) {
      const { files, packages } = reachable(resolve(ROOT, entry));
      expect([...packages]).not.toContain('viem');
      expect([...files].filter((f) => f.includes('/src/chain/') || f.includes('/contracts/') || f.includes('/gateway/'))).toEqual([]);
    }
  });

  it('the walk does find viem where it is used (the check can fail)', () => {
    expect([...reachable(resolve(ROOT, 'gateway/service.ts')).packages]).toContain('viem');
  });
});
