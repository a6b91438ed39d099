// The hotspot's metered HTTP forward proxy. Both CONNECT tunnels and plain absolute-URI
// requests are metered per client, in both directions: a hotspot pays for airtime either
// way, and the client pays for what it sends as well as what it receives.
//   - CONNECT: every byte through the tunnel, after the proxy's 200 response.
//   - plain forwarding: request and response bodies. Heads are not metered: the proxy
//     rewrites them, so the client could not count them as the proxy does, and Node
//     bounds their size.
// Nothing is forwarded to the origin before the client has proved its key (auth.ts) and
// paid for something.
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createLogger, type Logger } from '../../src/log.ts';
import { ClientAccount, metered } from './account.ts';
import { authenticate, formatChallenge, NonceBook } from './auth.ts';
import { CutOffError } from './errors.ts';
import { createTariff, SERVED_HEADER } from './meter.ts';
import type { PaidListener, PaymentsIn, ServedLog } from './payments.ts';
import { signTariff, TARIFF_PATH } from './tariff.ts';
import { type UpstreamPolicy, upstreamAddress } from './upstream.ts';

export interface MeteredProxyOptions {
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Bytes per unit (default 100 KB). */
  unitBytes?: number;
  /** Price of one unit, in wei. */
  price: bigint;
  payments: PaymentsIn;
  /** What was served from each channel, kept across restarts (default: memory only). */
  servedLog?: ServedLog;
  /** The hotspot's key: its tariff is served signed at GET /picopay/tariff (see tariff.ts). */
  hotspot?: { address: string; sign(digest: Uint8Array): Uint8Array };
  /** A client whose traffic waits this long for a payment is cut off. */
  idleCutoffMs: number;
  /** Where clients may go: public destinations, and those the operator allows (see upstream.ts). */
  upstream?: UpstreamPolicy;
  /**
   * Other host:port names clients reach the proxy by (a DNS name, a forwarded port). Clients
   * sign the proxy's name; the address they connected to is always accepted.
   */
  authorities?: string[];
  /** How long a challenge nonce stays valid (default 30 s). */
  nonceTtlMs?: number;
  /** Most answered nonces remembered at once (default 10,000); when full, answers are refused until some expire. */
  maxNonces?: number;
  logger?: Logger;
}

export interface ClientStats {
  client: string;
  channel: string;
  /** Cumulative amount credited, in wei. */
  paid: bigint;
  unitsPaid: number;
  bytesServed: number;
  allowance: number;
  connections: number;
  cutOffs: number;
}

export interface MeteredProxy {
  port: number;
  url: string;
  stats(): { clients: ClientStats[]; usedNonces: number };
  /** The channel is settled and gone: its account goes too (what it had paid ahead and not used is forfeited). */
  closeChannel(channel: string): void;
  /**
   * Serves nothing until resumed (the hotspot's earnings are not backed on-chain for now):
   * every client's connections are cut, new requests are answered 503. Meters are kept.
   */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

/** host:port of the local end of `socket`: the name a client that dialled an address signs. */
function localAuthority(socket: Socket): string {
  // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they dialled a.b.c.d.
  const address = (socket.localAddress ?? '').replace(/^::ffff:(?=\d+\.)/i, '');
  return `${address.includes(':') ? `[${address}]` : address}:${socket.localPort ?? 0}`;
}

export async function startMeteredProxy(options: MeteredProxyOptions): Promise<MeteredProxy> {
  const tariff = createTariff({ unitBytes: options.unitBytes, pricePerUnit: options.price });
  const log = options.logger ?? createLogger('hotspot');
  const accounts = new Map<string, ClientAccount>();
  const nonces = new NonceBook({ ttlMs: options.nonceTtlMs, max: options.maxNonces });
  let paused = false;

  // Every request proves its key with a nonce of its own, keep-alive or not: a socket is
  // never bound to a client, so nothing on it is trusted beyond the request that was signed.
  // One account per client and channel: naming another's channel gets nothing of it.
  const keyOf = (client: string, channel: string): string => `${client.toLowerCase()}/${channel.toLowerCase()}`;
  const accountOf = (req: IncomingMessage): { account: ClientAccount; nonce: string } | undefined => {
    const authorities = [localAuthority(req.socket), ...(options.authorities ?? [])];
    const who = authenticate(req.headers['proxy-authorization'], nonces, authorities);
    if (who === undefined) return undefined;
    const key = keyOf(who.client, who.channel);
    let account = accounts.get(key);
    if (account === undefined) {
      account = new ClientAccount(who.client, who.channel, tariff, options.idleCutoffMs, log, options.servedLog);
      account.credit(options.payments.credited(who.client, who.channel));
      accounts.set(key, account);
      log.info({ client: who.client, channel: who.channel }, 'new paying channel');
    }
    return { account, nonce: who.nonce };
  };
  const onPaid: PaidListener = (client, channel, cumulative) => accounts.get(keyOf(client, channel))?.credit(cumulative);
  options.payments.on('paid', onPaid);

  const tariffBody = options.hotspot && JSON.stringify(signTariff(options.hotspot.address, tariff, options.hotspot.sign));
  const server = http.createServer();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // The one thing served to anyone: what the hotspot charges, signed, so a payer can check it before it locks anything.
    if (req.method === 'GET' && req.url === TARIFF_PATH) {
      if (!tariffBody) return refuse(res, 404);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(tariffBody);
      return;
    }
    forward(req, res).catch((error: unknown) => {
      log.debug({ err: error }, 'forwarding failed');
      res.destroy();
    });
  });
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', (error) => log.debug({ err: error }, 'client socket error'));
    tunnel(req, socket, head).catch((error: unknown) => {
      log.debug({ err: error }, 'tunnel failed');
      socket.destroy();
    });
  });

  // Plain forwarding: `GET http://host:port/path`.
  async function forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const who = accountOf(req);
    if (who === undefined) return challenge(res);
    const { account } = who;
    const target = parseAbsoluteUrl(req.url);
    if (target === undefined) return refuse(res, 400);
    const address = await upstreamAddress(target.hostname, target.port, options.upstream);
    if (address === null) return refuse(res, 403);
    const closed = new AbortController();
    res.once('close', () => closed.abort());
    if (paused) return refuse(res, 503, { 'retry-after': '10' });
    if (!(await paidFor(account, closed.signal))) return refuse(res, 402, { [SERVED_HEADER]: String(account.meter.bytesServed) });
    // Spent now that it is served: a replay of this header, waiting beside it, is not.
    if (!nonces.use(who.nonce)) return challenge(res);

    const upstream = http.request({
      host: address,
      port: target.port,
      method: req.method,
      path: target.path,
      headers: withoutHopByHop(req.headers),
      agent: false,
    });
    const detach = account.attach({ destroy: () => (upstream.destroy(), res.destroy()) });
    res.once('close', () => (detach(), upstream.destroy()));
    upstream.on('error', (error) => {
      log.debug({ err: error, target: target.host }, 'upstream error');
      if (!res.headersSent) refuse(res, 502);
      else res.destroy();
    });
    upstream.once('response', (response) => {
      res.writeHead(response.statusCode ?? 502, withoutHopByHop(response.headers));
      pipeline(response, metered(account), res).catch((error: unknown) => log.debug({ err: error }, 'response cut short'));
    });
    // A failure here is an upstream or client failure, already answered by the handlers above.
    await pipeline(req, metered(account), upstream).catch((error: unknown) => log.debug({ err: error }, 'request body cut short'));
  }

  // CONNECT host:port, then raw bytes both ways.
  async function tunnel(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const who = accountOf(req);
    if (who === undefined) return challengeRaw(socket);
    const { account } = who;
    const target = parseAuthority(req.url);
    if (target === undefined) return refuseRaw(socket, 400);
    const address = await upstreamAddress(target.hostname, target.port, options.upstream);
    if (address === null) return refuseRaw(socket, 403);
    const closed = new AbortController();
    socket.once('close', () => closed.abort());
    if (paused) return refuseRaw(socket, 503, { 'Retry-After': '10' });
    if (!(await paidFor(account, closed.signal))) return refuseRaw(socket, 402, { [SERVED_HEADER]: String(account.meter.bytesServed) });
    if (!nonces.use(who.nonce)) return challengeRaw(socket);

    // Half-open, so that the origin's end of a response does not cut the client's upload.
    const upstream = net.connect({ host: address, port: target.port, allowHalfOpen: true });
    const destroyBoth = () => (upstream.destroy(), socket.destroy());
    const detach = account.attach({ destroy: destroyBoth });
    socket.once('close', () => upstream.destroy());
    let open = false;
    upstream.on('error', (error) => {
      log.debug({ err: error, target: target.host }, 'upstream error');
      if (!open) refuseRaw(socket, 502);
    });
    upstream.once('connect', () => {
      open = true;
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      // Bytes the client sent right after its CONNECT head belong to the tunnel, metered.
      if (head.length > 0) socket.unshift(head);
      void Promise.allSettled([
        pipeline(socket, metered(account), upstream),
        pipeline(upstream, metered(account), socket),
      ]).then(() => (destroyBoth(), detach()));
    });
  }

  function challenge(res: ServerResponse): void {
    refuse(res, 407, { 'proxy-authenticate': formatChallenge(nonces.issue()) });
  }

  function challengeRaw(socket: Duplex): void {
    refuseRaw(socket, 407, { 'Proxy-Authenticate': formatChallenge(nonces.issue()) });
  }

  // Waits until the client has paid for at least one byte; false if it was cut off meanwhile.
  async function paidFor(account: ClientAccount, signal: AbortSignal): Promise<boolean> {
    try {
      await account.allowanceAvailable(signal);
      return true;
    } catch (error) {
      if (error instanceof CutOffError) return false;
      throw error;
    } finally {
      // Addresses cost nothing to make up: keep no state for those that never paid.
      const key = keyOf(account.client, account.channel);
      if (account.meter.paid === 0n && !account.busy && accounts.get(key) === account) accounts.delete(key);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
  log.info({ url, unitBytes: tariff.unitBytes, price: tariff.pricePerUnit.toString() }, 'metered proxy listening');

  return {
    port,
    url,
    stats: () => ({
      clients: [...accounts.values()].map((account) => ({
        client: account.client,
        channel: account.channel,
        paid: account.meter.paid,
        unitsPaid: account.meter.unitsPaid,
        bytesServed: account.meter.bytesServed,
        allowance: account.meter.allowance(),
        connections: account.connections,
        cutOffs: account.cutOffs,
      })),
      usedNonces: nonces.size,
    }),
    closeChannel: (channel) => {
      for (const [key, account] of accounts) {
        if (account.channel !== channel.toLowerCase()) continue;
        account.cutOff();
        accounts.delete(key);
      }
    },
    pause: () => {
      paused = true;
      for (const account of accounts.values()) account.cutOff();
      log.warn('paused: serving nothing until the ledger channel is funded again');
    },
    resume: () => {
      paused = false;
      log.info('serving again');
    },
    close: async () => {
      options.payments.off('paid', onPaid);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const account of accounts.values()) account.cutOff();
      await closed;
    },
  };
}

interface Target {
  hostname: string;
  port: number;
  /** host:port, for logs. */
  host: string;
  path: string;
}

function parseAbsoluteUrl(raw: string | undefined): Target | undefined {
  if (raw === undefined || !raw.startsWith('http://')) return undefined;
  try {
    const url = new URL(raw);
    return { hostname: unbracketed(url.hostname), port: Number(url.port || 80), host: url.host, path: `${url.pathname}${url.search}` };
  } catch {
    return undefined;
  }
}

function parseAuthority(raw: string | undefined): Target | undefined {
  if (raw === undefined || !/:\d+$/.test(raw)) return undefined;
  try {
    const url = new URL(`http://${raw}`);
    // URL drops the port 80; a CONNECT authority names it, so take it from the raw text.
    return { hostname: unbracketed(url.hostname), port: Number(raw.slice(raw.lastIndexOf(':') + 1)), host: raw, path: '' };
  } catch {
    return undefined;
  }
}

// URL keeps IPv6 literals in brackets; sockets and allow-lists want the bare address.
function unbracketed(hostname: string): string {
  return hostname.replace(/^\[(.*)\]$/, '$1');
}

const HOP_BY_HOP = ['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = String(headers.connection ?? '').split(',').map((name) => name.trim().toLowerCase());
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.includes(name) && !named.includes(name)));
}

function refuse(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { connection: 'close', ...headers });
  res.end();
}

function refuseRaw(socket: Duplex, status: number, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${lines}Connection: close\r\nContent-Length: 0\r\n\r\n`);
}
