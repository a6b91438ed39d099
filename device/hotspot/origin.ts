// A tiny HTTP origin for demos and tests: GET /bytes/<n> streams n bytes of deterministic
// pseudo-random content (so a download can be checked by its hash) with a content-length.
import { createHash } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const CHUNK_BYTES = 64 * 1024;
/** Largest body served, so that a typo cannot stream for hours. */
const MAX_BYTES = 1 << 30;

/** The bytes /bytes/<total> serves, in chunks (xorshift32 from a fixed seed). */
export function* pseudoRandomChunks(total: number, chunkBytes = CHUNK_BYTES): Generator<Buffer> {
  let state = 0x9e3779b9;
  for (let offset = 0; offset < total; offset += chunkBytes) {
    const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, total - offset));
    for (let i = 0; i < chunk.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      chunk[i] = state & 0xff;
    }
    yield chunk;
  }
}

/** Hex SHA-256 of what /bytes/<total> serves. */
export function pseudoRandomSha256(total: number): string {
  const hash = createHash('sha256');
  for (const chunk of pseudoRandomChunks(total)) hash.update(chunk);
  return hash.digest('hex');
}

export interface Origin {
  port: number;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  close(): Promise<void>;
}

export async function startOrigin(options: { host?: string; port?: number } = {}): Promise<Origin> {
  const server: Server = http.createServer((req, res) => {
    const match = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    const total = Number(match?.[1]);
    const refusal = !match ? 404 : req.method !== 'GET' ? 405 : total > MAX_BYTES ? 413 : undefined;
    if (refusal !== undefined) {
      res.writeHead(refusal).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    pipeline(Readable.from(pseudoRandomChunks(total)), res).catch(() => {
      // The client went away mid-body: nothing to clean up beyond what pipeline did.
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  return {
    port,
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
