import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

// Where a paying client may go through the hotspot: public destinations only. Never to
// loopback, private, link-local, shared or reserved ranges (the hotspot's own services,
// the gateway's API and broker, a node's JSON-RPC with unlocked accounts, the LAN), nor to
// this machine's own addresses, unless the operator allows a destination by name
// (`--allow-upstream host:port`, as the local demo does for its origin). A name is resolved
// once and the connection goes to the address that was checked, so a name that resolves
// differently the second time (DNS rebinding) cannot slip past.

// One list per family: a BlockList also matches IPv4 addresses against IPv4-mapped IPv6 rules.
const NOT_PUBLIC_V4 = new BlockList();
const NOT_PUBLIC_V6 = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) NOT_PUBLIC_V4.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 96], ['::ffff:0:0', 96], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32],
  ['2002::', 16], ['3fff::', 20], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) NOT_PUBLIC_V6.addSubnet(net, prefix, 'ipv6');

export interface UpstreamPolicy {
  /** host:port destinations allowed whatever they resolve to (lowercase names, bare IPv6). */
  allowed?: readonly string[];
  /** Resolves a name to its addresses (tests; default: the system resolver). */
  resolve?: (host: string) => Promise<string[]>;
}

const systemResolve = async (host: string): Promise<string[]> => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** Whether `address` (an IP literal) is a public destination, not one of this machine's. */
export function isPublic(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4 ? NOT_PUBLIC_V4.check(address, 'ipv4') : NOT_PUBLIC_V6.check(address, 'ipv6')) return false;
  const own = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
  return !own.some((i) => i.address.toLowerCase() === address.toLowerCase());
}

/**
 * The address to connect to for `host:port`, or null when the policy refuses it (the
 * name does not resolve, or any of its addresses is not public). Connect to the address
 * returned, not to the name.
 */
export async function upstreamAddress(host: string, port: number, policy: UpstreamPolicy = {}): Promise<string | null> {
  const name = host.toLowerCase();
  const resolve = policy.resolve ?? systemResolve;
  let addresses: string[];
  try {
    addresses = isIP(name) ? [name] : await resolve(name);
  } catch {
    return null;
  }
  if (addresses.length === 0) return null;
  if (policy.allowed?.includes(`${name}:${port}`)) return addresses[0]!;
  return addresses.every(isPublic) ? addresses[0]! : null;
}
