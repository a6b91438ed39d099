// The contract's own id, outcome hash, digests and leaf hash equal src/model's, for random
// inputs: what devices sign off-chain is exactly what the contract verifies.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adjudicatorAbi } from '../../src/chain/abi.generated.ts';
import { toContractOutcome, toContractParams, toContractState, toContractSubAlloc } from '../../src/chain/encode.ts';
import { channelId } from '../../src/model/channelId.ts';
import { domainSeparator, outcomeHash, stateDigest, toHex, voucherDigest } from '../../src/model/hash.ts';
import { lockedLeaf } from '../../src/model/locked.ts';
import type { Address, Allocation, Params, State, SubAlloc } from '../../src/model/types.ts';
import { useDevnet } from '../../src/testing/chain.ts';

const devnet = useDevnet();

const hexBytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => toHex(b));
const address = hexBytes(20) as fc.Arbitrary<Address>;
const uint256 = fc.bigInt({ min: 0n, max: (1n << 256n) - 1n });
const uint64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const indexMap = fc.constantFrom([0, 1] as const, [1, 0] as const, [0, 0] as const, [1, 1] as const);

function allocation(): fc.Arbitrary<Allocation> {
  return fc.integer({ min: 1, max: 3 }).chain((n) =>
    fc.record({
      assets: fc.uniqueArray(address, { minLength: n, maxLength: n }),
      balances: fc.array(fc.tuple(uint256, uint256), { minLength: n, maxLength: n }),
      locked: fc.array(fc.record({ id: hexBytes(32), balances: fc.array(uint256, { minLength: n, maxLength: n }), indexMap }), { maxLength: 5 }),
    }),
  );
}

describe('contract hashing conforms to src/model', () => {
  it('channel id, outcome hash, state and voucher digests, locked leaves (200 random states)', async () => {
    const { deployer: client } = devnet();
    const read = <T>(functionName: string, args: readonly unknown[]): Promise<T> =>
      client.publicClient.readContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName, args } as never) as Promise<T>;
    const domain = { chainId: client.chainId, adjudicator: client.adjudicator };
    const separator = domainSeparator(domain);
    expect(await read('domainSeparator', [])).toBe(toHex(separator));

    await fc.assert(
      fc.asyncProperty(
        fc.record({ participants: fc.tuple(address, address), challengeDuration: uint64, nonce: uint256, kind: fc.constantFrom(0, 1, 2) }),
        uint64,
        allocation(),
        fc.boolean(),
        uint256,
        async (p, version, outcome, isFinal, cumulative) => {
          const params: Params = { ...domain, ...p, kind: p.kind as Params['kind'] };
          const id = channelId(params);
          const state: State = { channelId: id, version, outcome, isFinal };
          expect(await read('channelId', [toContractParams(params, client)])).toBe(id);
          expect(await read('outcomeHash', [toContractOutcome(outcome)])).toBe(outcomeHash(outcome));
          expect(await read('stateDigest', [id, toContractState(state)])).toBe(toHex(stateDigest(separator, state)));
          expect(await read('voucherDigest', [id, cumulative])).toBe(toHex(voucherDigest(separator, id, cumulative)));
          for (const sub of outcome.locked as SubAlloc[]) {
            expect(await read('lockedLeaf', [toContractSubAlloc(sub)])).toBe(toHex(lockedLeaf(sub)));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
