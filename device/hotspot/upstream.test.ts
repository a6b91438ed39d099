import { describe, expect, it } from 'vitest';
import { isPublic, upstreamAddress } from './upstream.ts';

describe('upstream policy', () => {
  it('public addresses only: no loopback, private, link-local, shared, reserved or mapped ones', () => {
    for (const a of ['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111']) expect(isPublic(a), a).toBe(true);
    for (const a of ['127.0.0.1', '10.1.2.3', '172.31.255.255', '192.168.0.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '64:ff9b::7f00:1', '::7f00:1', 'fec0::1', '3fff::1', 'not-an-ip']) {
      expect(isPublic(a), a).toBe(false);
    }
  });

  it('a name is refused if any address it resolves to is not public, and the checked address is the one to connect to', async () => {
    const resolve = async (host: string): Promise<string[]> => ({ 'ok.example': ['93.184.216.34'], 'rebind.example': ['93.184.216.34', '127.0.0.1'], 'lan.example': ['192.168.1.10'] })[host] ?? [];
    expect(await upstreamAddress('ok.example', 443, { resolve })).toBe('93.184.216.34');
    expect(await upstreamAddress('OK.example', 443, { resolve })).toBe('93.184.216.34');
    expect(await upstreamAddress('rebind.example', 443, { resolve })).toBeNull();
    expect(await upstreamAddress('lan.example', 443, { resolve })).toBeNull();
    expect(await upstreamAddress('nowhere.example', 443, { resolve })).toBeNull();
    expect(await upstreamAddress('fails.example', 443, { resolve: () => Promise.reject(new Error('ENOTFOUND')) })).toBeNull();
    // Allowed by the operator, by name and port only.
    expect(await upstreamAddress('lan.example', 8080, { resolve, allowed: ['lan.example:8080'] })).toBe('192.168.1.10');
    expect(await upstreamAddress('lan.example', 8081, { resolve, allowed: ['lan.example:8080'] })).toBeNull();
  });
});
