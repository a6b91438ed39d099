import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

// A JSON-RPC endpoint in front of a node that can be taken down: while down it resets
// every connection, as an RPC provider that went away would.

export interface RpcProxy {
  url: string;
  /** Resets every connection, open and new, for `ms`. */
  down(ms: number): void;
  close(): Promise<void>;
}

export async function startRpcProxy(target: string): Promise<RpcProxy> {
  let downUntil = 0;
  const sockets = new Set<Socket>();
  const server = http.createServer(async (req, res) => {
    if (Date.now() < downUntil) return void req.socket.destroy();
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    try {
      const answer = await fetch(target, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) });
      const body = Buffer.from(await answer.arrayBuffer());
      if (Date.now() < downUntil) return void req.socket.destroy();
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(body);
    } catch {
      req.socket.destroy();
    }
  });
  server.on('connection', (socket) => {
    if (Date.now() < downUntil) return void socket.destroy();
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    down(ms) {
      downUntil = Date.now() + ms;
      for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
