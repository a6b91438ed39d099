import { EventEmitter } from 'node:events';
import type { Agent } from '../src/client/agent.ts';
import { type Bytes32, ChannelKind } from '../src/model/types.ts';
import type { PaidListener, PaymentsIn, PaymentsOut } from './hotspot/payments.ts';

/**
 * The hotspot's view of its stream channels: what each client has paid in total, from
 * the highest voucher of each funded stream channel where the client pays this device.
 */
export class StreamPaymentsIn extends EventEmitter<{ paid: Parameters<PaidListener> }> implements PaymentsIn {
  constructor(private readonly agent: Agent) {
    super();
    agent.on('voucher', ({ channel }) => this.emit('paid', channel.peer, this.credited(channel.peer)));
    agent.on('funded', (channel) => {
      if (channel.params.kind === ChannelKind.Stream) this.emit('paid', channel.peer, this.credited(channel.peer));
    });
  }

  credited(client: string): bigint {
    let sum = 0n;
    for (const c of this.agent.channelsWith(client as `0x${string}`)) {
      if (c.params.kind === ChannelKind.Stream && c.idx === 1 && this.agent.isFunded(c.id)) sum += c.voucher?.cumulative ?? 0n;
    }
    return sum;
  }
}

/** The client's side: each cumulative total becomes one voucher in its stream channel. */
export function streamPaymentsOut(agent: Agent, channel: Bytes32): PaymentsOut {
  return {
    payUpTo(cumulative: bigint): void {
      const paid = agent.channel(channel).voucher?.cumulative ?? 0n;
      if (cumulative > paid) agent.payStream(channel, cumulative - paid);
    },
  };
}
