// Guards the gas targets of issue 3 (bench/gas.ts prints the full table).
import { describe, expect, it } from 'vitest';
import { measureGas, REFERENCE } from '../../bench/gas.ts';
import { useDevnet } from '../../src/testing/chain.ts';

const devnet = useDevnet();

describe('gas', () => {
  it('stays within the targets, and open siblings add at most 5% to a virtual dispute', async () => {
    const gas = await measureGas(devnet());
    expect(gas.coopLifecycle).toBeLessThanOrEqual(REFERENCE.coopLifecycle.target);
    expect(gas.disputeLifecycle).toBeLessThanOrEqual(REFERENCE.disputeLifecycle.target);
    expect(gas.virtualDispute).toBeLessThanOrEqual(REFERENCE.virtualDispute.target);
    for (const n of ['1', '10'] as const) expect(gas.virtualDisputeSiblings[n]).toBeLessThanOrEqual(gas.virtualDisputeSiblings['0'] * 1.05);
  });
});
