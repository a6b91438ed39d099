import { join } from 'node:path';
import { Agent, type Policy, type Timing } from '../src/client/agent.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { loadOrCreateKeystore } from '../src/crypto/keystore.ts';
import { ProtocolTimeoutError } from '../src/errors.ts';
import type { Signer } from '../src/crypto/keys.ts';
import { type Address, ChannelKind } from '../src/model/types.ts';
import type { Logger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MqttTransport, type MqttTransportOptions } from '../src/transport/mqtt.ts';

// A device: its key, its store, its MQTT link, and its ledger channel with the gateway.
// No chain code: the device's owner funds its side from any wallet, and the gateway
// (or a watchtower) watches the chain.

export interface DeviceConfig {
  dataDir: string;
  password: string;
  gateway: Address;
  mqttUrl: string;
  chainId: bigint;
  adjudicator: Address;
  /** This device's side of its ledger channel. */
  deposit: bigint;
  /** What it asks the gateway to put in. */
  gatewayDeposit: bigint;
  logger: Logger;
  policy?: Partial<Policy>;
  voucherDurableEvery?: bigint;
  mqttLogin?: Pick<MqttTransportOptions, 'username' | 'password' | 'tls'>;
  timing?: Partial<Timing>;
}

export interface RunningDevice {
  signer: Signer;
  agent: Agent;
  ledger: ChannelRecord;
  stop(): Promise<void>;
}

export async function startDevice(cfg: DeviceConfig): Promise<RunningDevice> {
  const { signer, created } = loadOrCreateKeystore(join(cfg.dataDir, 'key.json'), cfg.password);
  cfg.logger.info({ address: signer.address, created }, 'device key');
  const store = new ChannelStore(join(cfg.dataDir, 'device.db'));
  const transport = new MqttTransport({ url: cfg.mqttUrl, self: signer.address, ...cfg.mqttLogin, logger: cfg.logger.child({ part: 'mqtt' }) });
  const chain = { chainId: cfg.chainId, adjudicator: cfg.adjudicator };
  const agent = new Agent({
    signer,
    transport,
    store,
    chain,
    logger: cfg.logger,
    timing: cfg.timing,
    voucherDurableEvery: cfg.voucherDurableEvery,
    policy: {
      // Virtual channels only, through our gateway (the signature already binds our chain).
      acceptOpen: (p) => p.kind !== ChannelKind.Ledger && p.gateway === cfg.gateway,
      ...cfg.policy,
    },
  });
  agent.start();
  await transport.connect();
  transport.watchPeer(cfg.gateway);
  const existing = agent.channels().find((c) => c.peer === cfg.gateway && c.params.kind === ChannelKind.Ledger && c.phase !== 'final');
  const ledger = existing ?? (await agent.open(cfg.gateway, { balances: [[cfg.deposit, cfg.gatewayDeposit]] }));
  cfg.logger.info({ channel: ledger.id, resumed: !!existing }, 'ledger channel with the gateway');
  return {
    signer,
    agent,
    ledger,
    stop: async () => {
      agent.stop();
      await transport.close();
      store.close();
    },
  };
}

/** Polls the gateway's status API until it reports the ledger channel funded on-chain. */
export async function waitFunded(statusUrl: string, channelId: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const res = await fetch(`${statusUrl}/channels/${channelId}`);
      if (res.ok && ((await res.json()) as { funded?: boolean }).funded) return;
    } catch {
      // the gateway may be restarting
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new ProtocolTimeoutError(`ledger channel ${channelId} not funded within ${timeoutMs} ms`);
}
