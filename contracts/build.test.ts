import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileContracts, renderArtifacts } from './build.ts';

const root = resolve(import.meta.dirname, '..');

describe('committed contract artifacts', () => {
  it('match a fresh compile (run `npm run build:contracts` after editing contracts/*.sol)', () => {
    for (const [path, content] of renderArtifacts(compileContracts())) {
      expect(readFileSync(join(root, path), 'utf8'), `${path} is stale`).toBe(content);
    }
  });
});
