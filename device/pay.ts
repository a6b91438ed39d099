import { setTimeout as delay } from 'node:timers/promises';
import type { Agent } from '../src/client/agent.ts';
import { ProtocolTimeoutError } from '../src/errors.ts';
import type { Bytes32 } from '../src/model/types.ts';
import { Backoff } from '../src/transport/backoff.ts';

/**
 * Pays `amount` in channel `id` exactly once, trying again while the peer is away for up to
 * `retryForMs`. A payment that timed out may still land (its proposal stays out, and the
 * peer may sign it when it is back), so it is proposed again only once that proposal has
 * been answered without landing: paying again at once would pay twice.
 */
export async function payOnce(agent: Agent, id: Bytes32, amount: bigint, retryForMs: number, onRetry: (err: unknown) => void = () => {}): Promise<void> {
  let landed = 0;
  const count = ({ channel, direction }: { channel: { id: string }; direction: 'in' | 'out' }) => {
    if (channel.id === id && direction === 'out') landed++;
  };
  agent.on('updated', count);
  const backoff = new Backoff({ initialMs: 250, maxMs: 5_000 });
  const since = Date.now();
  try {
    for (;;) {
      const before = landed;
      try {
        await agent.pay(id, amount);
        return;
      } catch (err) {
        if (!(err instanceof ProtocolTimeoutError) || Date.now() - since >= retryForMs) throw err;
        onRetry(err);
        // Until this side's proposal is answered (signed, or refused) it may still land.
        while ((agent.channel(id).staged || agent.channel(id).prepared) && Date.now() - since < retryForMs) await delay(backoff.next());
        if (landed > before) return;
      }
    }
  } finally {
    agent.off('updated', count);
  }
}
