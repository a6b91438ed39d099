import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import { TransportError } from '../errors.ts';
import { mayPublish, maySubscribe } from './acl.ts';

export interface EmbeddedBrokerOptions {
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** Accepts or refuses a login. Without it every client is let in. */
  authenticate?: (username: string | undefined, password: Buffer | undefined) => boolean | Promise<boolean>;
  /**
   * Enforces the rules of docs/mqtt/acl: username = device address, read only one's own
   * inbox, write only as oneself. Unlike Mosquitto, which drops a denied publish
   * silently, aedes disconnects the client that sent it.
   */
  acl?: boolean;
}

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
  const broker = await Aedes.createBroker(brokerOptions(options));
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

function brokerOptions({ authenticate, acl }: EmbeddedBrokerOptions): AedesOptions {
  // aedes does not keep the login name; the ACL needs it.
  const usernames = new WeakMap<Client, string>();
  const options: AedesOptions = {
    authenticate: (client, username, password, done) => {
      Promise.resolve(authenticate ? authenticate(username, password) : true).then(
        (accepted) => {
          if (!accepted) return done(authError(), false);
          if (username !== undefined) usernames.set(client, username);
          done(null, true);
        },
        () => done(authError(), false),
      );
    },
  };
  if (acl) {
    options.authorizeSubscribe = (client, subscription, done) =>
      // A null subscription makes aedes answer 0x80 (failure) in the SUBACK, as Mosquitto does.
      done(null, maySubscribe(usernames.get(client), subscription.topic) ? subscription : null);
    options.authorizePublish = (client, packet, done) =>
      done(client && mayPublish(usernames.get(client), packet.topic) ? null : new Error(`publish to ${packet.topic} denied`));
  }
  return options;
}

function authError(): AuthenticateError {
  return Object.assign(new Error('bad username or password'), { returnCode: NOT_AUTHORIZED }) as AuthenticateError;
}
