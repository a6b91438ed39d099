import { createRequire } from 'node:module';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import { TransportError } from '../errors.ts';
import { mayPublish, maySubscribe } from './acl.ts';
import { silentLogger, type TransportLogger } from './log.ts';
import { verifyLogin } from './login.ts';
import { PRESENCE_OFFLINE, PRESENCE_ONLINE, sessionIdOf, TOPIC_ROOT } from './topics.ts';

export interface EmbeddedBrokerOptions {
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /**
   * Who may connect. 'keys' (the default): a picopay login token for the username's key
   * (src/transport/login.ts). A function: a check of its own (username, password). Both
   * enforce the rules of docs/mqtt/acl: username = device address, read only one's own
   * inbox, write only as oneself; unlike Mosquitto, which drops a denied publish
   * silently, aedes disconnects the client that sent it. 'open': anyone, anything, for
   * tests of the transport's mechanics and benches only.
   */
  access?: 'keys' | 'open' | ((username: string | undefined, password: Buffer | undefined) => boolean | Promise<boolean>);
  /** Further host:port names clients dial this broker by; 127.0.0.1, localhost and `host` at its port are always accepted. */
  names?: string[];
  /** Most a session may have queued at once (see DEFAULT_QUEUE_LIMITS). */
  queueLimits?: QueueLimits;
  logger?: TransportLogger;
}

/**
 * What the broker keeps for devices that are away: messages waiting for an offline
 * session. Past a session's limit, or all sessions' together, new messages for a session
 * that is away are dropped (the newest go, what waits stays), and logged: the protocol
 * retransmits and resynchronises, so a device that comes back loses nothing it needs, and
 * an outsider flooding inboxes costs the broker at most this much memory. Messages to a
 * connected device are never dropped.
 */
export interface QueueLimits {
  messages: number;
  bytes: number;
  /** All sessions together: keys cost nothing, so many sessions must not add up without bound either. */
  totalBytes: number;
}

export const DEFAULT_QUEUE_LIMITS: QueueLimits = { messages: 1000, bytes: 1 << 20, totalBytes: 64 << 20 };

/** The largest message the broker takes: a picopay frame is at most 64 KiB (MqttTransport's maxFrameBytes). */
const MAX_PAYLOAD_BYTES = 64 * 1024;
/** Subscriptions per session: its inbox and the presence of the peers it watches. */
const MAX_SUBSCRIPTIONS = 1024;
const PRESENCE = new Set([PRESENCE_ONLINE, PRESENCE_OFFLINE]);

export interface EmbeddedBroker {
  /** mqtt://host:port, ready for MqttTransport. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** MQTT CONNACK return code 5 (MQTT 3.1.1): not authorized. */
const NOT_AUTHORIZED = 5;

/** An aedes MQTT broker on a TCP server, for tests, the gateway's default and benchmarks. */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const host = options.host ?? '127.0.0.1';
  const authorities: string[] = [];
  const broker = await Aedes.createBroker({ ...brokerOptions(options.access ?? 'keys', authorities), persistence: boundedPersistence(options.queueLimits ?? DEFAULT_QUEUE_LIMITS, options.logger ?? silentLogger) });
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    // Without it Nagle's algorithm holds small packets back and a round trip takes ~44 ms instead of ~0.4 ms.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    broker.handle(socket);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new TransportError(`cannot listen on ${host}:${options.port ?? 0}`, { cause: error })));
    server.listen(options.port ?? 0, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  authorities.push(...new Set([`127.0.0.1:${port}`, `localhost:${port}`, `${urlHost}:${port}`, ...(options.names ?? [])]));

  let closing: Promise<void> | undefined;
  return {
    url: `mqtt://${urlHost}:${port}`,
    port,
    close: () => {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await serverClosed;
      })();
      return closing;
    },
  };
}

function brokerOptions(access: NonNullable<EmbeddedBrokerOptions['access']>, authorities: readonly string[]): AedesOptions {
  if (access === 'open') return {};
  const check = access === 'keys' ? (username: string | undefined, password: Buffer | undefined) => verifyLogin(username, password, authorities) : access;
  // aedes does not keep the login name; the ACL needs it.
  const usernames = new WeakMap<Client, string>();
  const options: AedesOptions = {
    authenticate: (client, username, password, done) => {
      // A picopay session id belongs to its address: nobody else may take it over (and with it the queue and subscriptions).
      if (client.id.startsWith('picopay-') && client.id !== sessionIdOf(username ?? '')) return done(authError(), false);
      Promise.resolve(check(username, password)).then(
        (accepted) => {
          if (!accepted) return done(authError(), false);
          if (username !== undefined) usernames.set(client, username);
          done(null, true);
        },
        () => done(authError(), false),
      );
    },
  };
  // A null subscription makes aedes answer 0x80 (failure) in the SUBACK, as Mosquitto does.
  // Subscriptions are kept for the session: a session holds a bounded number of them (its
  // restored ones included, which aedes keeps on the client).
  options.authorizeSubscribe = (client, subscription, done) => {
    const held = Object.keys((client as unknown as { subscriptions?: object }).subscriptions ?? {}).length;
    done(null, held < MAX_SUBSCRIPTIONS && maySubscribe(usernames.get(client), subscription.topic) ? subscription : null);
  };
  options.authorizePublish = (client, packet, done) => {
    const username = usernames.get(client!);
    // A last will on one's presence says one is gone, whatever it was set to: one announcing
    // `online` would hide that a device vanished (the gateway settles on-chain when it does).
    if ((client as unknown as { will?: unknown } | null)?.will === packet && packet.topic === `${TOPIC_ROOT}/presence/${username}`) packet.payload = Buffer.from(PRESENCE_OFFLINE);
    // Retained messages outlive every session: only one's own presence may be one, and only as online or offline.
    const retainOk = !packet.retain || (packet.topic === `${TOPIC_ROOT}/presence/${username}` && PRESENCE.has(packet.payload.toString()));
    const ok = client && mayPublish(username, packet.topic) && retainOk && packet.payload.length <= MAX_PAYLOAD_BYTES;
    done(ok ? null : new Error(`publish to ${packet.topic} denied`));
  };
  return options;
}

function authError(): AuthenticateError {
  return Object.assign(new Error('bad username or password'), { returnCode: NOT_AUTHORIZED }) as AuthenticateError;
}

type Sub = { clientId: string };
type Stored = { topic?: string; payload?: Buffer | string };

/**
 * aedes' memory persistence, with the queue of every session bounded (see QueueLimits).
 * Counts are kept beside the queues, and recounted from the queue itself each time a
 * client is ready, so that they cannot drift.
 */
function boundedPersistence(limits: QueueLimits, log: TransportLogger): AedesOptions['persistence'] {
  // aedes' own default, a CommonJS module: loaded the way aedes loads it.
  const memory = createRequire(import.meta.url)('aedes-persistence') as () => unknown;
  const p = memory() as {
    outgoingEnqueue(sub: Sub, packet: Stored): Promise<void>;
    outgoingEnqueueCombi(subs: Sub[], packet: Stored): Promise<void>;
    outgoingClearMessageId(client: { id: string }, packet: unknown): Promise<Stored | undefined>;
    outgoingStream(client: { id: string }): AsyncIterable<Stored>;
    setup(broker: Aedes): Promise<void>;
  };
  const queued = new Map<string, { messages: number; bytes: number }>();
  let total = 0;
  const sizeOf = (packet: Stored): number => (packet.topic?.length ?? 0) + (packet.payload?.length ?? 0);
  let connected: (clientId: string) => boolean = () => false;
  // `total` is what waits for sessions that are away: what a connected one has queued is its own to acknowledge.
  const set = (clientId: string, q: { messages: number; bytes: number }): void => {
    const bytes = q.messages === 0 ? 0 : q.bytes;
    if (!connected(clientId)) total += bytes - (queued.get(clientId)?.bytes ?? 0);
    if (q.messages === 0) queued.delete(clientId);
    else queued.set(clientId, { messages: q.messages, bytes });
  };
  const admit = (clientId: string, packet: Stored): boolean => {
    const q = queued.get(clientId) ?? { messages: 0, bytes: 0 };
    const size = sizeOf(packet);
    if (q.messages >= limits.messages || q.bytes + size > limits.bytes || total + size > limits.totalBytes) return false;
    set(clientId, { messages: q.messages + 1, bytes: q.bytes + size });
    return true;
  };
  let dropped = 0;
  const drop = (clientId: string): void => {
    // Logged by count, not per message: a flood must not flood the log.
    if (dropped++ % 1000 === 0) log.warn({ session: clientId, dropped, limits }, 'a session queue is full: new messages for it are dropped');
  };
  const enqueue = p.outgoingEnqueue.bind(p);
  const enqueueCombi = p.outgoingEnqueueCombi.bind(p);
  const clear = p.outgoingClearMessageId.bind(p);
  // aedes queues a message for every persistent session, connected or not, and then looks
  // it up again to deliver it to a connected one: for those it is dropped (which makes
  // aedes cut the client off) only when the client leaves ten times a session's limit
  // unacknowledged, which no device that reads its inbox does. The limits, and the total,
  // apply to sessions that are away.
  const count = (clientId: string, packet: Stored): boolean => {
    const q = queued.get(clientId) ?? { messages: 0, bytes: 0 };
    const size = sizeOf(packet);
    if (q.messages >= 10 * limits.messages || q.bytes + size > 10 * limits.bytes) return false;
    set(clientId, { messages: q.messages + 1, bytes: q.bytes + size });
    return true;
  };
  const keep = (clientId: string, packet: Stored): boolean => (connected(clientId) ? count(clientId, packet) : admit(clientId, packet)) || (drop(clientId), false);
  p.outgoingEnqueue = async (sub, packet) => {
    if (keep(sub.clientId, packet)) return enqueue(sub, packet);
  };
  p.outgoingEnqueueCombi = async (subs, packet) => {
    const kept = subs.filter((sub) => keep(sub.clientId, packet));
    if (kept.length > 0) await enqueueCombi(kept, packet);
  };
  p.outgoingClearMessageId = async (client, packet) => {
    const removed = await clear(client, packet);
    const q = queued.get(client.id);
    if (removed && q) set(client.id, { messages: q.messages - 1, bytes: Math.max(0, q.bytes - sizeOf(removed)) });
    return removed;
  };
  const setup = p.setup.bind(p);
  p.setup = async (broker) => {
    await setup(broker);
    connected = (clientId) => (broker as unknown as { clients: Record<string, unknown> }).clients[clientId] !== undefined;
    // A session that comes or goes moves its queue out of or into what waits for sessions away.
    broker.on('clientDisconnect', (client) => {
      total += queued.get(client.id)?.bytes ?? 0;
    });
    broker.on('clientReady', (client) => {
      total -= queued.get(client.id)?.bytes ?? 0;
      void (async () => {
        const q = { messages: 0, bytes: 0 };
        for await (const packet of p.outgoingStream(client)) {
          q.messages++;
          q.bytes += sizeOf(packet);
        }
        set(client.id, q);
      })().catch(() => {});
    });
  };
  return p as unknown as AedesOptions['persistence'];
}
