import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

// Imports run downwards: entry points and demos (bin/, demo/) above the processes and
// benches (gateway/, device/, bench/), above the library (src/). Nothing in the library
// imports a process, a bench, a demo or a test; protocol code never imports the test
// support in src/testing; gateway and device never import each other (their tests may).

const ROOT = join(import.meta.dirname, '..');
const TOP = ['bin', 'demo', 'bench', 'gateway', 'device', 'test', 'contracts', 'src'] as const;

/** For each kind of importing file, the top-level folders it must not import from. */
function forbidden(file: string): { folders: string[]; testing: boolean } {
  const isTest = file.endsWith('.test.ts');
  const top = file.split('/')[0]!;
  if (top === 'src' && !isTest && !file.startsWith('src/testing/')) return { folders: ['bin', 'demo', 'bench', 'gateway', 'device', 'test'], testing: true };
  if (top === 'src') return { folders: ['bin', 'demo', 'bench', 'gateway', 'device', 'test'], testing: false };
  // A process's tests may drive the other process's side (a device against the gateway).
  if (top === 'gateway') return { folders: ['bin', 'demo', 'bench', ...(isTest ? [] : ['device', 'test'])], testing: !isTest };
  if (top === 'device') return { folders: ['bin', 'demo', 'bench', ...(isTest ? [] : ['gateway', 'test'])], testing: !isTest };
  if (top === 'bench') return { folders: ['bin', 'demo', 'test'], testing: false };
  return { folders: [], testing: false };
}

function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => normalize(join(dirname(file), m[1]!)));
}

describe('imports run downwards', () => {
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && (TOP as readonly string[]).includes(f.split('/')[0]!));

  it('no file imports from a layer above it', () => {
    const wrong: string[] = [];
    for (const file of files) {
      const rule = forbidden(file);
      for (const target of importsOf(file)) {
        const top = relative(ROOT, join(ROOT, target)).split('/')[0]!;
        if (rule.folders.includes(top) || (rule.testing && target.startsWith('src/testing/'))) wrong.push(`${file} imports ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("the client's modules are reached through the Agent: only src/client and the test support import them", () => {
    const facade = ['src/client/agent.ts', 'src/client/types.ts', 'src/client/intermediary.ts'];
    const wrong: string[] = [];
    for (const file of files) {
      if (file.startsWith('src/client/') || file.startsWith('src/testing/')) continue;
      for (const target of importsOf(file)) if (target.startsWith('src/client/') && !facade.includes(target)) wrong.push(`${file} imports ${target}`);
    }
    expect(wrong).toEqual([]);
  });

  it('sees the files it checks', () => {
    expect(files.filter((f) => f.startsWith('src/')).length).toBeGreaterThan(40);
    expect(files).toContain('bin/main.ts');
  });
});
