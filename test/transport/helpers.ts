import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Address } from '../../src/model/types.ts';
import type { TransportHandler } from '../../src/transport/types.ts';

const HOST = '127.0.0.1';

export function randomAddress(): Address {
  return `0x${randomBytes(20).toString('hex')}`;
}

/** Polls `check` until it holds; fails after `timeoutMs` (a bound, not a timing assertion). */
export async function waitFor(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A handler that records everything a transport reports; frames are read as UTF-8 text. */
export class Recorder implements TransportHandler {
  readonly messages: { from: Address; text: string }[] = [];
  readonly peersDown: Address[] = [];
  connections = 0;

  message(from: Address, frame: Uint8Array): void {
    this.messages.push({ from, text: Buffer.from(frame).toString('utf8') });
  }
  connected(): void {
    this.connections++;
  }
  peerDown(peer: Address): void {
    this.peersDown.push(peer);
  }
  texts(): string[] {
    return this.messages.map((message) => message.text);
  }
}

export function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, HOST);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A TCP relay whose connections the test can cut at once, as a network failure would. */
export interface TcpProxy {
  readonly port: number;
  /** Destroys every relayed connection on both sides, without any MQTT DISCONNECT. */
  cut(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = createServer((downstream) => {
    const upstream = tcpConnect(targetPort, HOST);
    track(downstream);
    track(upstream);
    downstream.setNoDelay(true);
    upstream.setNoDelay(true);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    downstream.once('close', () => upstream.destroy());
    upstream.once('close', () => downstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    port: (server.address() as AddressInfo).port,
    cut,
    close: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---- Mosquitto ----

/** Where the Mosquitto binaries are; Debian puts the broker in /usr/sbin, not on every PATH. */
const MOSQUITTO_PATH = [process.env['PATH'] ?? '', '/usr/sbin', '/usr/local/sbin'].join(delimiter);
const mosquittoEnv = { ...process.env, PATH: MOSQUITTO_PATH };

export const mosquittoInstalled = spawnSync('sh', ['-c', 'command -v mosquitto'], { env: mosquittoEnv }).status === 0;

/** Debian's dynamic-security plugin (package mosquitto). */
export const DYNSEC_PLUGIN = ['/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so', '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so', '/usr/lib/mosquitto_dynamic_security.so'].find((p) => existsSync(p)) ?? '';

export interface MosquittoUser {
  username: string;
  password: string;
}

export interface MosquittoOptions {
  /** When given, anonymous logins are refused and `aclFile` applies. */
  users?: MosquittoUser[];
  aclFile?: string;
  /** Serves MQTT over TLS (mqtts://) with this certificate. */
  tls?: TestCertificates;
  /** Runs the dynamic-security plugin with this admin login (anonymous clients get only what its anonymous group allows). */
  dynsec?: MosquittoUser;
}

export interface Mosquitto {
  readonly url: string;
  readonly port: number;
  /** Stops (saving its persistence) and starts again on the same port and data directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a private Mosquitto on a free 127.0.0.1 port with its own config and persistence directory. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = await mkdtemp(join(tmpdir(), 'picopay-mosquitto-'));
  const port = await freePort();
  const config = [
    // Only has an effect when run as root: stay this user instead of switching to "mosquitto".
    `user ${userInfo().username}`,
    `listener ${port} ${HOST}`,
    ...(options.tls ? [`certfile ${options.tls.certFile}`, `keyfile ${options.tls.keyFile}`] : []),
    'persistence true',
    `persistence_location ${dir}/`,
    'set_tcp_nodelay true',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
  ];
  if (options.dynsec) {
    const dynsecFile = join(dir, 'dynamic-security.json');
    const init = spawnSync('mosquitto_ctrl', ['dynsec', 'init', dynsecFile, options.dynsec.username, options.dynsec.password], { env: mosquittoEnv });
    if (init.status !== 0) throw new Error(`mosquitto_ctrl dynsec init failed: ${init.stderr.toString()}`);
    config.push('allow_anonymous false', `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${dynsecFile}`);
  } else if (options.users) {
    const passwordFile = join(dir, 'passwd');
    for (const [index, user] of options.users.entries()) {
      const args = index === 0 ? ['-c', '-b', passwordFile] : ['-b', passwordFile];
      const result = spawnSync('mosquitto_passwd', [...args, user.username, user.password], { env: mosquittoEnv });
      if (result.status !== 0) throw new Error(`mosquitto_passwd failed: ${result.stderr.toString()}`);
    }
    config.push('allow_anonymous false', `password_file ${passwordFile}`);
    if (options.aclFile) config.push(`acl_file ${options.aclFile}`);
  } else {
    config.push('allow_anonymous true');
  }
  const configFile = join(dir, 'mosquitto.conf');
  await writeFile(configFile, `${config.join('\n')}\n`);

  let child: ChildProcess | undefined;
  let stderr = '';
  const start = async () => {
    const broker = spawn('mosquitto', ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'], env: mosquittoEnv });
    child = broker;
    broker.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    let ready = false;
    const deadline = Date.now() + 10_000;
    while (!ready) {
      if (broker.exitCode !== null) throw new Error(`mosquitto exited: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port}: ${stderr}`);
      ready = await portAccepts(port);
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const stop = async () => {
    const broker = child;
    child = undefined;
    if (broker === undefined || broker.exitCode !== null) return;
    const exited = new Promise((resolve) => broker.once('exit', resolve));
    broker.kill('SIGTERM');
    const killTimer = setTimeout(() => broker.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killTimer);
  };

  await start();
  return {
    url: `${options.tls ? 'mqtts' : 'mqtt'}://${HOST}:${port}`,
    port,
    restart: async () => {
      await stop();
      await start();
    },
    stop: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---- TLS ----

export interface TestCertificates {
  /** PEM of the test CA, for the client's `tls.ca`. */
  readonly ca: Buffer;
  readonly certFile: string;
  readonly keyFile: string;
}

/** The fixed test CA and the server certificate for 127.0.0.1 it signed (see fixtures/tls/README.md). */
export async function testCertificates(): Promise<TestCertificates> {
  const file = (name: string) => fileURLToPath(new URL(`fixtures/tls/${name}`, import.meta.url));
  return { ca: await readFile(file('ca.crt')), certFile: file('server.crt'), keyFile: file('server.key') };
}
