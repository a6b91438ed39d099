import type { Socket } from 'node:net';
import { connect, connectAsync, ErrorWithSubackPacket, type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { TransportError } from '../errors.ts';
import type { Address } from '../model/types.ts';
import type { Signer } from '../crypto/keys.ts';
import { Backoff, type BackoffOptions } from './backoff.ts';
import { brokerAuthority, brokerPassword, loginToken } from './login.ts';
import { silentLogger, type TransportLogger } from './log.ts';
import {
  ENROLL_LOGIN,
  enrollTopic,
  inboxFilter,
  inboxTopic,
  isAddress,
  PRESENCE_OFFLINE,
  PRESENCE_ONLINE,
  presenceOf,
  presenceTopic,
  senderOf,
  sessionIdOf,
} from './topics.ts';
import type { Transport, TransportHandler } from './types.ts';

export interface MqttTlsOptions {
  ca?: string | Buffer | string[] | Buffer[];
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Default true; false only for tests with self-signed certificates. */
  rejectUnauthorized?: boolean;
}

export interface MqttTransportOptions {
  /** Broker URL: mqtt://host:port, or mqtts://host:port with `tls`. */
  url: string;
  /** This device's address; its inbox is `picopay/v1/inbox/<self>/+`. */
  self: Address;
  /** Login name (default: the address, which the broker ACL expects). */
  username?: string;
  /** A fixed password (a broker of its own rules); without it and with `signer`, a fresh login token each attempt. */
  password?: string;
  /** This device's key: the password is a login token it signs for each connection attempt (src/transport/login.ts). */
  signer?: Signer;
  /**
   * For a Mosquitto whose logins the gateway issues (docs/mqtt, dynamic security): with
   * `signer`, log in with the key's fixed password for this broker, and while the broker
   * refuses it, hand it to the gateway on the write-only enrollment topic and try again,
   * until connectTimeoutMs.
   */
  enroll?: boolean;
  /**
   * Watches every peer's presence with one subscription (`presence/+`), as a gateway
   * watching thousands of devices must: a broker bounds the subscriptions of a session.
   * watchPeer then only says whose changes to report.
   */
  watchAllPeers?: boolean;
  tls?: MqttTlsOptions;
  /** Session identity at the broker (default derived from the address, so that a restart resumes the session). */
  clientId?: string;
  /** Keepalive in seconds (default 30); the broker publishes the last will after 1.5 × this without traffic. */
  keepaliveSec?: number;
  /** Delays between reconnection attempts. */
  backoff?: BackoffOptions;
  /** Frames above this size are refused on send and dropped on receipt (default 64 KiB). */
  maxFrameBytes?: number;
  /**
   * Sends not yet acknowledged by the broker (default 1024) beyond which send() waits for
   * acknowledgements while connected, and throws while disconnected.
   */
  maxPendingSends?: number;
  /** How long connect() waits for the first connection, in ms (default 30,000). */
  connectTimeoutMs?: number;
  /**
   * connect() returns at once and the client keeps trying, with backoff, however long the
   * broker is away: a device that also has a near link (BLE) works without its broker.
   */
  offlineStart?: boolean;
  logger?: TransportLogger;
}

const QOS = 1;
const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;
const DEFAULT_MAX_PENDING_SENDS = 1024;

/**
 * Transport over an MQTT broker (mqtt.js, MQTT 3.1.1). A message from A to B is published
 * with QoS 1 to `picopay/v1/inbox/<B>/<A>`; with the broker ACL of docs/mqtt a device can
 * publish only under its own address, so the topic authenticates the sender. Sessions are
 * persistent, so messages wait at the broker while a device is offline. Presence is a
 * retained `online`/`offline` on `picopay/v1/presence/<addr>`, `offline` being the last
 * will.
 *
 * Set the handler before connect(): messages the broker kept for this device arrive right
 * after the connection.
 */
export class MqttTransport implements Transport {
  readonly self: Address;
  private readonly log: TransportLogger;
  private readonly maxFrameBytes: number;
  private readonly maxPendingSends: number;
  private client: MqttClient | undefined;
  private handler: TransportHandler | undefined;
  private readonly watched = new Set<Address>();
  /** Last presence seen per watched peer, so that a repeated `offline` reports the peer down once. */
  private readonly presence = new Map<Address, string>();
  private unackedSends = 0;
  private sendersWaitingForRoom: (() => void)[] = [];
  private closed = false;
  private settleFirstConnection: ((error?: TransportError) => void) | undefined;

  constructor(private readonly options: MqttTransportOptions) {
    const self = options.self.toLowerCase();
    if (!isAddress(self)) throw new TransportError(`not an address: ${options.self}`);
    this.self = self;
    this.log = options.logger ?? silentLogger;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxPendingSends = options.maxPendingSends ?? DEFAULT_MAX_PENDING_SENDS;
  }

  /** Messages handed to send() that the broker has not acknowledged yet. */
  get pendingSends(): number {
    return this.unackedSends;
  }

  get isConnected(): boolean {
    return this.client?.connected ?? false;
  }

  /**
   * Connects, subscribes to the inbox and announces presence; afterwards reconnects on its
   * own with backoff. Rejects with TransportError when the broker refuses the login or the
   * first connection does not succeed within connectTimeoutMs.
   */
  async connect(): Promise<void> {
    if (this.client) throw new TransportError('connect() was already called');
    if (this.closed) throw new TransportError('transport is closed');
    const backoff = new Backoff(this.options.backoff);
    const client = connect(this.options.url, this.clientOptions());
    this.client = client;

    // Runs before mqtt.js schedules the next attempt on 'close', so each attempt waits longer.
    client.prependListener('close', () => {
      client.options.reconnectPeriod = backoff.next();
      // A token expires: the next attempt gets a fresh one.
      client.options.password = this.password();
    });
    client.on('connect', (connack) => {
      backoff.reset();
      (client.stream as Partial<Socket>).setNoDelay?.(true);
      void this.onConnect(client, connack);
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    // Senders waiting for acknowledgements that will not come before a reconnection give up.
    client.on('close', () => this.wakeSendersWaitingForRoom());
    client.on('error', (error: Error & { code?: unknown }) => {
      // Closing: an acknowledgement owed for a message that arrived meanwhile cannot go out any more, and need not.
      if (this.closed) return;
      // Refused while not enrolled yet: expected, and answered by enrolling (see firstConnection).
      if (this.options.enroll && (error.code === 4 || error.code === 5)) {
        // Started offline, no first connection enrolls: the device does it here.
        if (this.options.offlineStart) void this.enrollNow();
        return this.log.info({ url: this.options.url }, 'no broker login yet: enrolling');
      }
      // One line, no stack: a broker that is away is an expected condition, retried with backoff.
      this.log.warn({ err: String(error), url: this.options.url }, 'mqtt error');
    });
    client.on('offline', () => this.log.info({ url: this.options.url }, 'mqtt offline, reconnecting'));

    if (this.options.offlineStart) return;
    try {
      await this.firstConnection(client);
    } catch (error) {
      this.closed = true;
      client.end(true);
      throw error;
    }
  }

  setHandler(handler: TransportHandler): void {
    this.handler = handler;
  }

  async send(to: Address, frame: Uint8Array): Promise<void> {
    const client = this.client;
    if (client === undefined || this.closed) throw new TransportError('transport is not connected');
    const recipient = to.toLowerCase();
    if (!isAddress(recipient)) throw new TransportError(`not an address: ${to}`);
    if (frame.byteLength > this.maxFrameBytes) {
      throw new TransportError(`frame of ${frame.byteLength} bytes exceeds the limit of ${this.maxFrameBytes}`);
    }
    while (this.unackedSends >= this.maxPendingSends) {
      if (!client.connected) throw new TransportError(`offline with ${this.unackedSends} sends waiting for the broker`);
      await new Promise<void>((resolve) => this.sendersWaitingForRoom.push(resolve));
      if (this.closed) throw new TransportError('transport is closed');
    }
    this.unackedSends++;
    // Resolves once mqtt.js holds the message: it writes it now or after reconnecting and
    // retransmits it until the broker acknowledges. Copied, so the caller may reuse its buffer.
    client.publish(inboxTopic(recipient, this.self), Buffer.from(frame), { qos: QOS }, (error) => {
      this.unackedSends--;
      this.wakeSendersWaitingForRoom();
      if (error) this.log.debug({ err: error, to: recipient }, 'mqtt send failed');
    });
  }

  /**
   * Reports `peerDown(peer)` whenever the peer's presence turns to offline (last will or
   * clean exit), and right away if it is offline when first seen.
   */
  watchPeer(peer: Address): void {
    const address = peer.toLowerCase();
    if (!isAddress(address)) throw new TransportError(`not an address: ${peer}`);
    if (this.watched.has(address)) return;
    this.watched.add(address);
    if (this.options.watchAllPeers) return;
    // While offline mqtt.js queues the request and sends it on reconnection.
    this.client?.subscribe(presenceTopic(address), { qos: QOS }, (error) => {
      if (error) this.log.warn({ err: error, peer: address }, 'cannot watch peer presence');
    });
  }

  /**
   * Announces `offline` and disconnects, after the broker has acknowledged what was sent;
   * messages still waiting for a reconnection are lost. The session stays at the broker,
   * which keeps collecting messages for this device.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.settleFirstConnection?.(new TransportError('transport closed while connecting'));
    this.wakeSendersWaitingForRoom();
    const client = this.client;
    if (client === undefined) return;
    if (client.connected) {
      await client
        .publishAsync(presenceTopic(this.self), PRESENCE_OFFLINE, { qos: QOS, retain: true })
        .catch((error: unknown) => this.log.debug({ err: error }, 'cannot announce offline'));
    }
    await client.endAsync(!client.connected);
  }

  private clientOptions(): IClientOptions {
    const { options } = this;
    return {
      protocolVersion: 4,
      clientId: options.clientId ?? sessionIdOf(this.self),
      clean: false,
      username: options.username ?? this.self,
      password: this.password(),
      keepalive: options.keepaliveSec ?? 30,
      // Any positive value enables reconnection; the backoff sets it before every attempt.
      reconnectPeriod: 1,
      reconnectOnConnackError: true,
      // This class subscribes itself on each connection without a session (see onConnect).
      resubscribe: false,
      will: { topic: presenceTopic(this.self), payload: Buffer.from(PRESENCE_OFFLINE), qos: QOS, retain: true },
      ...options.tls,
    };
  }

  private password(): string | undefined {
    const { password, signer, url, enroll } = this.options;
    if (password !== undefined || !signer) return password;
    return enroll ? brokerPassword(signer, brokerAuthority(url)) : loginToken(signer, brokerAuthority(url));
  }

  private enrolling: Promise<void> | undefined;

  /** Publishes this key's fixed password on its enrollment topic, with the public enrollment login (at most one at a time). */
  private enrollNow(): Promise<void> {
    const { url, signer, tls } = this.options;
    if (!signer || this.enrolling) return this.enrolling ?? Promise.resolve();
    this.enrolling = (async () => {
      const client = await connectAsync(url, { protocolVersion: 4, clientId: ENROLL_LOGIN, username: ENROLL_LOGIN, password: ENROLL_LOGIN, clean: true, reconnectPeriod: 0, connectTimeout: 5_000, ...tls });
      try {
        await client.publishAsync(enrollTopic(this.self), brokerPassword(signer, brokerAuthority(url)), { qos: 1 });
      } finally {
        await client.endAsync();
      }
      this.log.info({ url }, 'enrolled at the broker: the gateway creates this login');
    })()
      .catch((error: unknown) => this.log.warn({ err: error, url }, 'enrollment failed; retrying with the next attempt'))
      // One enrollment per refused attempt at most, and none while one is on its way.
      .finally(() => setTimeout(() => (this.enrolling = undefined), 1_000).unref());
    return this.enrolling;
  }

  /** Resolves on the first complete connection, rejects on a refused login or the timeout. */
  private firstConnection(client: MqttClient): Promise<void> {
    const timeoutMs = this.options.connectTimeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      let lastError: Error | undefined;
      const timer = setTimeout(() => {
        const reason = lastError ? ` (last error: ${lastError.message})` : '';
        settle(new TransportError(`no connection to ${this.options.url} within ${timeoutMs} ms${reason}`, { cause: lastError }));
      }, timeoutMs);
      const onError = (error: Error & { code?: unknown }) => {
        lastError = error;
        // A refused CONNACK carries a numeric return code; socket and TLS errors are retried.
        if (typeof error.code !== 'number') return;
        // Not enrolled yet (or the gateway has not created the login yet): enroll, and the next attempt may pass.
        if (this.options.enroll && (error.code === 4 || error.code === 5)) return void this.enrollNow();
        settle(new TransportError(`broker refused the connection: ${error.message}`, { cause: error }));
      };
      const settle = (error?: TransportError) => {
        clearTimeout(timer);
        client.off('error', onError);
        this.settleFirstConnection = undefined;
        if (error) reject(error);
        else resolve();
      };
      client.on('error', onError);
      this.settleFirstConnection = settle;
    });
  }

  /**
   * Subscribes (the inbox only when the broker kept no session for us; presence always,
   * as peers may have been watched before this session existed), announces presence,
   * then tells the handler.
   */
  private async onConnect(client: MqttClient, connack: IConnackPacket): Promise<void> {
    if (this.closed) return;
    try {
      const presence = this.options.watchAllPeers ? [presenceTopic('+' as Address)] : [...this.watched].map(presenceTopic);
      const topics = connack.sessionPresent ? presence : [inboxFilter(this.self), ...presence];
      if (topics.length > 0) {
        const refused = await subscribeReportingRefusals(client, topics);
        if (refused.length > 0) {
          this.log.warn({ topics: refused, username: this.options.username ?? this.self }, 'broker refused subscriptions (ACL?)');
        }
        if (refused.includes(inboxFilter(this.self))) {
          this.settleFirstConnection?.(new TransportError('the broker refused the subscription to our inbox (check the ACL and username)'));
          return;
        }
      }
      await client.publishAsync(presenceTopic(this.self), PRESENCE_ONLINE, { qos: QOS, retain: true });
    } catch (error) {
      // The connection dropped meanwhile; the next one starts over.
      this.log.debug({ err: error }, 'connection lost while setting up');
      return;
    }
    this.log.info({ url: this.options.url, sessionPresent: connack.sessionPresent }, 'mqtt connected');
    this.settleFirstConnection?.();
    this.callHandler('connected', () => this.handler?.connected?.());
  }

  private onMessage(topic: string, payload: Buffer): void {
    const sender = senderOf(topic, this.self);
    if (sender !== undefined) {
      if (payload.byteLength > this.maxFrameBytes) {
        this.log.debug({ from: sender, bytes: payload.byteLength }, 'dropped oversized frame');
        return;
      }
      const frame = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
      this.callHandler('message', () => this.handler?.message(sender, frame));
      return;
    }
    const peer = presenceOf(topic);
    if (peer !== undefined && this.watched.has(peer)) {
      this.onPresence(peer, payload.toString('utf8'));
      return;
    }
    this.log.debug({ topic: topic.slice(0, 200) }, 'dropped message on an unexpected topic');
  }

  private onPresence(peer: Address, state: string): void {
    if (state !== PRESENCE_ONLINE && state !== PRESENCE_OFFLINE) {
      this.log.debug({ peer }, 'dropped malformed presence');
      return;
    }
    const previous = this.presence.get(peer);
    this.presence.set(peer, state);
    if (state === previous) return;
    if (state === PRESENCE_OFFLINE) this.callHandler('peerDown', () => this.handler?.peerDown?.(peer));
    else this.callHandler('peerUp', () => this.handler?.peerUp?.(peer));
  }

  private wakeSendersWaitingForRoom(): void {
    const waiting = this.sendersWaitingForRoom;
    this.sendersWaitingForRoom = [];
    for (const wake of waiting) wake();
  }

  /** A throwing handler must not break mqtt.js's event processing. */
  private callHandler(event: string, call: () => void): void {
    try {
      call();
    } catch (error) {
      this.log.warn({ err: error, event }, 'transport handler threw');
    }
  }
}

/** Subscribes with QoS 1; returns the topics the broker refused (SUBACK 0x80), which mqtt.js reports as an error. */
async function subscribeReportingRefusals(client: MqttClient, topics: string[]): Promise<string[]> {
  try {
    await client.subscribeAsync(topics, { qos: QOS });
    return [];
  } catch (error) {
    if (!(error instanceof ErrorWithSubackPacket)) throw error;
    const granted = error.packet.granted;
    return topics.filter((_, index) => {
      const code = granted[index];
      return typeof code !== 'number' || (code & 0x80) !== 0;
    });
  }
}
