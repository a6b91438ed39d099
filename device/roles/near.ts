import { setTimeout as delay } from 'node:timers/promises';
import type { ChannelRecord } from '../../src/channel/record.ts';
import { announce } from '../../src/cli/args.ts';
import { Progress } from '../../src/cli/progress.ts';
import { formatEth } from '../../src/cli/units.ts';
import { type Address, ChannelKind } from '../../src/model/types.ts';
import type { Logger } from '../../src/log.ts';
import { Backoff } from '../../src/transport/backoff.ts';
import { payOnce } from '../pay.ts';
import type { RunningDevice } from '../service.ts';

// The near-field roles. A payee serves payments in the virtual channels payers open with
// it and tells what it earned; a payer opens one with a nearby payee through the gateway,
// pays it over BLE (or MQTT, when the link is down), and settles once the gateway can be
// reached, however long that takes within its patience.

export interface NearPayeeOptions {
  fundTimeoutMs: number;
  logger: Logger;
}

/** Serves until stopped; prints `paid` for every payment in and `settled` for every channel that ends. */
export async function runNearPayee(dev: RunningDevice, o: NearPayeeOptions): Promise<void> {
  await dev.untilFunded(o.fundTimeoutMs);
  const mine = (c: ChannelRecord) => c.current.state.outcome.balances[0]![c.idx]!;
  // What each open channel held at the last payment in: a restarted payee starts from its store.
  const before = new Map(dev.agent.channels().filter((c) => c.params.kind === ChannelKind.Virtual).map((c) => [c.id, mine(c)]));
  let earned = 0n;
  dev.agent.on('funded', (c) => {
    if (c.params.kind === ChannelKind.Virtual) before.set(c.id, mine(c));
  });
  dev.agent.on('updated', ({ channel, direction }) => {
    if (channel.params.kind !== ChannelKind.Virtual || direction !== 'in') return;
    const now = mine(channel);
    const was = before.get(channel.id) ?? now;
    before.set(channel.id, now);
    if (now <= was) return;
    earned += now - was;
    announce('paid', { channel: channel.id, from: channel.peer, amount: now - was, earned });
  });
  dev.agent.on('settled', (c) => {
    if (c.params.kind !== ChannelKind.Virtual) return;
    before.delete(c.id);
    announce('settled', { channel: c.id, with: c.peer, balance: mine(c) });
  });
  announce('ready', { address: dev.signer.address });
  o.logger.info({ address: dev.signer.address }, 'serving near-field payments');
  await new Promise(() => {});
}

export interface NearPayerOptions {
  gateway: Address;
  payee: Address;
  /** Locked in the virtual channel: the most this run can pay. */
  lock: bigint;
  amount: bigint;
  count: number;
  fundTimeoutMs: number;
  /** How long opening, a payment or settling is tried again while the payee or the gateway is away. */
  retryForMs: number;
  logger: Logger;
}

/** Opens a channel with the payee, pays it `count` times `amount`, settles; resolves when settled. */
export async function runNearPayer(dev: RunningDevice, o: NearPayerOptions): Promise<void> {
  const { agent } = dev;
  dev.near?.watchPeer(o.payee);
  await dev.untilFunded(o.fundTimeoutMs);
  const retried = async <T>(what: string, attempt: () => Promise<T>): Promise<T> => {
    const backoff = new Backoff({ initialMs: 500, maxMs: 10_000 });
    const since = Date.now();
    for (;;) {
      try {
        return await attempt();
      } catch (err) {
        if (Date.now() - since >= o.retryForMs) throw err;
        o.logger.warn({ err: String(err) }, `${what} failed; trying again`);
        await delay(backoff.next());
      }
    }
  };
  const vc = await retried('opening the channel', () => agent.openVirtual(o.payee, { gateway: o.gateway, balances: [[o.lock, 0n]] }));
  announce('virtual', { channel: vc.id, lock: o.lock });
  const bar = new Progress('paying', o.count);
  for (let i = 1; i <= o.count; i++) {
    await payOnce(agent, vc.id, o.amount, o.retryForMs, (err) => o.logger.warn({ err: String(err) }, `payment ${i} not answered yet; waiting for its answer`));
    bar.update(i, `${formatEth(BigInt(i) * o.amount)} paid, over ${dev.near?.linked(o.payee) ? 'BLE' : 'MQTT'}`);
  }
  bar.done();
  const settled = await retried('settling', () => agent.settleVirtual(vc.id));
  announce('settled', { channel: settled.id, paid: o.lock - settled.current.state.outcome.balances[0]![0]! });
}
