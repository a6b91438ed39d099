import { afterAll } from 'vitest';
import { removeTempDirs } from '../src/testing/agents.ts';

afterAll(removeTempDirs);
