import { describe, expect, it } from 'vitest';
import { startAnvil } from '../../src/chain/anvil.ts';

async function chainId(rpcUrl: string): Promise<string> {
  const res = await fetch(rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }) });
  return ((await res.json()) as { result: string }).result;
}

describe('startAnvil', () => {
  it('runs independent nodes on free ports of 127.0.0.1 and stops them', async () => {
    const [one, two] = await Promise.all([startAnvil({ chainId: 1337, accounts: 2 }), startAnvil()]);
    try {
      expect(one.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(one.port).not.toBe(two.port);
      expect(await chainId(one.rpcUrl)).toBe('0x539');
      expect(one.accounts).toHaveLength(2);
      expect(one.accounts[0]!.address).toBe('0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266');
    } finally {
      await Promise.all([one.stop(), two.stop()]);
    }
    await expect(chainId(one.rpcUrl)).rejects.toThrow();
  });
});
