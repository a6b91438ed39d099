import { EventEmitter } from 'node:events';
import type { Agent } from '../src/client/agent.ts';
import { UnfundedError } from '../src/errors.ts';
import { type Bytes32, ChannelKind } from '../src/model/types.ts';
import type { FactStorage } from '../src/store/types.ts';
import type { PaidListener, PaymentsIn, PaymentsOut, ServedLog } from './hotspot/payments.ts';

/**
 * The hotspot's view of its stream channels: what a client has paid in one of them, from
 * the highest voucher of that channel, if it is a funded stream in which the client pays
 * this device.
 */
export class StreamPaymentsIn extends EventEmitter<{ paid: Parameters<PaidListener> }> implements PaymentsIn {
  constructor(private readonly agent: Agent) {
    super();
    agent.on('voucher', ({ channel }) => this.emit('paid', channel.peer, channel.id, this.credited(channel.peer, channel.id)));
    agent.on('funded', (channel) => {
      if (channel.params.kind === ChannelKind.Stream) this.emit('paid', channel.peer, channel.id, this.credited(channel.peer, channel.id));
    });
  }

  credited(client: string, channel: string): bigint {
    const c = this.agent.channelsWith(client as `0x${string}`).find((r) => r.id === channel.toLowerCase());
    if (!c || c.params.kind !== ChannelKind.Stream || c.idx !== 1 || !this.agent.isFunded(c.id)) return 0n;
    return c.voucher?.cumulative ?? 0n;
  }
}

/** Bytes served per channel in the device's store, so that a restarted hotspot does not serve them again. */
export function storedServedLog(facts: FactStorage): ServedLog {
  return {
    served: (channel) => facts.fact<number>(`served:${channel}`) ?? 0,
    save: (channel, bytes) => facts.setFact(`served:${channel}`, bytes),
    forget: (channel) => facts.deleteFact(`served:${channel}`),
  };
}
/**
 * The client's side: each cumulative total becomes one voucher in its stream channel,
 * while `funded()` says the ledger channel's deposits are on-chain (a payment refused
 * meanwhile stops the download, which goes on once they are back).
 */
export function streamPaymentsOut(agent: Agent, channel: Bytes32, funded: () => boolean = () => true): PaymentsOut {
  return {
    payUpTo(cumulative: bigint): void {
      if (!funded()) throw new UnfundedError('the ledger channel is not funded on-chain (a re-org took a deposit): paying again once it is');
      const paid = agent.channel(channel).voucher?.cumulative ?? 0n;
      if (cumulative > paid) agent.payStream(channel, cumulative - paid);
    },
  };
}
