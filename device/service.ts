import { join } from 'node:path';
import { Agent, type AgentOptions, type Policy, type Timing } from '../src/client/agent.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { loadOrCreateKeystore } from '../src/crypto/keystore.ts';
import type { Signer } from '../src/crypto/keys.ts';
import { type Address, ChannelKind } from '../src/model/types.ts';
import type { Logger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import type { FactStorage } from '../src/store/types.ts';
import type { BleTransport } from '../src/transport/ble/transport.ts';
import { MqttTransport, type MqttTransportOptions } from '../src/transport/mqtt.ts';
import { RelayClient, relaying } from '../src/transport/relay.ts';
import { RoutedTransport } from '../src/transport/router.ts';
import type { Transport } from '../src/transport/types.ts';
import { type FundingSource, type FundingWatch, waitFunded, watchFunding } from './funding.ts';
import type { NearConfig } from './near.ts';

// A device: its key, its store, its MQTT link, and its ledger channel with the gateway.
// No chain code: the device's owner funds its side from any wallet, the device reads the
// deposits over plain JSON-RPC (funding.ts), and the gateway (or a watchtower) watches
// the chain for disputes.

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
  /** The challenge period of the channels it proposes (seconds, within the contract's bounds). */
  challengeDuration?: bigint;
  logger: Logger;
  policy?: Partial<Policy>;
  voucherDurableEvery?: bigint;
  /** What the gateway charges per virtual channel this device's ledger channel funds (asset 0). */
  virtualFee?: bigint;
  /** Per-peer limit and minimum lock for the virtual channels others open with this device. */
  virtualLimits?: AgentOptions['virtualLimits'];
  mqttLogin?: Pick<MqttTransportOptions, 'username' | 'password' | 'tls' | 'enroll'>;
  timing?: Partial<Timing>;
  /** Where the device learns that its ledger channel is funded on-chain; none: it does not check. */
  funding?: FundingSource;
  /** Tests of power cuts: commits made without fsync are lost with the process (see StoreOptions.writeBack). */
  writeBack?: boolean;
  /** How long after its deposits were first seen they are read again, for a re-org deeper than the confirmations (default 10 min). */
  recheckMs?: number;
  /**
   * A BLE link to nearby peers beside MQTT: frames to a peer go over BLE while it is linked.
   * The device then starts without its broker (a restart while the gateway is away), once
   * its ledger channel exists.
   */
  near?: NearConfig;
}

export interface RunningDevice {
  signer: Signer;
  agent: Agent;
  ledger: ChannelRecord;
  /** What the device remembers beside its channels (a hotspot: bytes served per channel). */
  facts: FactStorage;
  /**
   * Resolves once both deposits of the ledger channel are on-chain. Until then the device
   * accepts no virtual channel: what the gateway would lock in it is not there yet.
   */
  untilFunded(timeoutMs: number): Promise<void>;
  /** Whether the deposits are on-chain as last read (a re-org can take them back: see watchFunding). */
  readonly funded: boolean;
  /** Hears when the deposits go (false: pay and serve nothing more) and come back. */
  onFunding(listener: (funded: boolean) => void): void;
  /** The BLE link, with near: what it refused, which peers it has. */
  near?: BleTransport;
  stop(): Promise<void>;
}

export async function startDevice(cfg: DeviceConfig): Promise<RunningDevice> {
  const { signer, created } = loadOrCreateKeystore(join(cfg.dataDir, 'key.json'), cfg.password);
  cfg.logger.info({ address: signer.address, created }, 'device key');
  const store = new ChannelStore(join(cfg.dataDir, 'device.db'), { writeBack: cfg.writeBack });
  // Loaded only for a near link: a device without one never parses BlueZ's libraries.
  const near = cfg.near ? await (await import('./near.ts')).startNear(signer, cfg.near, cfg.logger.child({ part: 'ble' })) : undefined;
  const via = cfg.near?.via;
  // With no internet (via), there is no broker: everything goes over BLE, the gateway's frames sealed for the relay.
  const mqtt = via ? undefined : new MqttTransport({ url: cfg.mqttUrl, self: signer.address, signer, ...cfg.mqttLogin, offlineStart: !!near, logger: cfg.logger.child({ part: 'mqtt' }) });
  const transport = farAndNear(signer, mqtt, near, cfg, cfg.logger);
  const chain = { chainId: cfg.chainId, adjudicator: cfg.adjudicator };
  let funded = !cfg.funding;
  if (!cfg.funding) cfg.logger.warn('no chain RPC or gateway status URL: the device pays and serves without checking that its ledger channel is funded');
  const agent = new Agent({
    signer,
    transport,
    store,
    chain,
    logger: cfg.logger,
    timing: cfg.timing,
    challengeDuration: cfg.challengeDuration,
    voucherDurableEvery: cfg.voucherDurableEvery,
    virtualFee: cfg.virtualFee,
    virtualLimits: cfg.virtualLimits,
    policy: {
      // Virtual channels only, through our gateway (the signature already binds our chain).
      acceptOpen: (p) => funded && p.kind !== ChannelKind.Ledger && p.gateway === cfg.gateway,
      ...cfg.policy,
    },
  });
  // Room on the BLE link is kept for peers the device has a channel with.
  near?.keepLinks((peer) => agent.channelsWith(peer).length > 0);
  agent.start();
  await mqtt?.connect();
  // The gateway is reached over MQTT (or the relay) only: the near link dials just the peers asked of it.
  mqtt?.watchPeer(cfg.gateway);
  const existing = agent.channelsWith(cfg.gateway).find((c) => c.params.kind === ChannelKind.Ledger && c.phase !== 'final');
  const ledger = existing ?? (await agent.open(cfg.gateway, { balances: [[cfg.deposit, cfg.gatewayDeposit]] }));
  cfg.logger.info({ channel: ledger.id, resumed: !!existing }, 'ledger channel with the gateway');
  const listeners: ((funded: boolean) => void)[] = [];
  let watch: FundingWatch | undefined;
  return {
    signer,
    agent,
    ledger,
    facts: store.service,
    get funded() {
      return funded;
    },
    onFunding: (listener) => void listeners.push(listener),
    near,
    untilFunded: async (timeoutMs) => {
      const source = cfg.funding;
      if (funded || !source) return;
      cfg.logger.info({ channel: ledger.id, source: source.name }, 'waiting for the deposits on-chain');
      const onError = (err: unknown) => cfg.logger.warn({ err: String(err), source: source.name }, 'funding check failed; retrying');
      await waitFunded(source, ledger, { timeoutMs, onError });
      funded = true;
      cfg.logger.info({ channel: ledger.id }, 'ledger channel funded on-chain');
      // When they were first seen is kept, so that a restart does not watch them for another window.
      let since = store.service.fact<number>(`funded:${ledger.id}`);
      if (since === undefined) store.service.setFact(`funded:${ledger.id}`, (since = Date.now()));
      const windowMs = cfg.recheckMs ?? 600_000;
      watch = watchFunding(source, ledger, {
        since,
        windowMs,
        pollMs: Math.min(10_000, windowMs / 10),
        onError,
        onChange: (now) => {
          funded = now;
          if (now) cfg.logger.info({ channel: ledger.id }, 'the deposits are back: paying and serving again');
          else cfg.logger.warn({ channel: ledger.id }, 'the deposits counted before are gone (a re-org): no payment or service until they are back');
          for (const listener of listeners) listener(now);
        },
      });
    },
    stop: async () => {
      watch?.stop();
      agent.stop();
      await transport.close();
      store.close();
    },
  };
}

/** The device's transport: MQTT, MQTT and BLE routed per peer (and relaying for others), or BLE through a relay. */
function farAndNear(signer: Signer, mqtt: MqttTransport | undefined, near: BleTransport | undefined, cfg: Pick<DeviceConfig, 'near' | 'gateway'>, logger: Logger): Transport {
  const refused = (err: unknown) => logger.debug({ err: String(err) }, 'relay envelope refused');
  if (!near) return mqtt!;
  // Keepalives to the gateway: idle, a relayed device still counts as online there.
  if (!mqtt) return new RelayClient(near, cfg.near!.via!, signer, { keepalive: cfg.gateway, onRefused: refused });
  const routed = new RoutedTransport(near, mqtt);
  return cfg.near?.relay ? relaying(routed, near, mqtt, refused) : routed;
}
