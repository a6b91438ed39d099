import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import { TransportError } from '../errors.ts';
import { mayPublish, maySubscribe } from './acl.ts';
import { verifyLogin } from './login.ts';

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
  const authorities: string[] = [];
  const broker = await Aedes.createBroker(brokerOptions(options.access ?? 'keys', authorities));
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
  options.authorizeSubscribe = (client, subscription, done) => done(null, maySubscribe(usernames.get(client), subscription.topic) ? subscription : null);
  options.authorizePublish = (client, packet, done) => done(client && mayPublish(usernames.get(client), packet.topic) ? null : new Error(`publish to ${packet.topic} denied`));
  return options;
}

function authError(): AuthenticateError {
  return Object.assign(new Error('bad username or password'), { returnCode: NOT_AUTHORIZED }) as AuthenticateError;
}
