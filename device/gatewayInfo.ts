import { readFileSync } from 'node:fs';
import { ConfigError } from '../src/errors.ts';

/** The gateway's ready line, saved as JSON: what a device needs to reach it (--gateway-info). */
export interface GatewayInfo {
  address: string;
  mqttUrl: string;
  chainId: number;
  adjudicator: string;
  rpcUrl: string;
  httpUrl: string;
  /** Wei, as a decimal string. */
  virtualFee?: string;
}

/** The --gateway-info file at `path`, or nothing without one; a ConfigError naming it if it cannot be read. */
export function readGatewayInfo(path: string | undefined): Partial<GatewayInfo> {
  if (!path) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as GatewayInfo;
  } catch (cause) {
    throw new ConfigError(`cannot read --gateway-info ${path}`, { cause });
  }
}
