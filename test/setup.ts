import { afterAll } from 'vitest';
import { removeTempDirs } from './helpers/agents.ts';

afterAll(removeTempDirs);
