import { join } from 'node:path';
import { Intermediary, type IntermediaryOptions } from '../client/intermediary.ts';
import type { AgentOptions } from '../client/types.ts';
import { silentLogger } from '../log.ts';
import { ChannelStore } from '../store/store.ts';
import { type MemoryFaults, MemoryNetwork } from '../transport/memory.ts';
import { CHAIN, makeParty, type Party, tempDir, until } from './agents.ts';

export interface GatewayNetworkOptions {
  /** Faults from once both ledger channels are open. */
  faults?: MemoryFaults;
  seed?: number;
  holdTimeoutMs?: number;
  /** The gateway's fee, and what the devices agree to pay. */
  fees?: { gateway: bigint; devices: bigint };
  /** Options of both devices; `payee` (B) overrides them for B. */
  devices?: Partial<AgentOptions>;
  payee?: Partial<AgentOptions>;
  /** Ledger channels of the gateway's that take no new locks (being settled on-chain). */
  frozen?: Set<string>;
  /** What the gateway does before signing a payee's claim (on-chain, in a real gateway). */
  secureClaim?: IntermediaryOptions['secureClaim'];
}

/**
 * Gateway G (an agent with the Intermediary) and devices A and B, each with a ledger
 * channel with G: A–G [100, 100], B–G [50, 100] ([device's, gateway's]). The parties go
 * onto `live`, to be stopped after the test.
 */
export async function gatewayNetwork(live: Party[], o: GatewayNetworkOptions = {}) {
  const network = new MemoryNetwork({ seed: o.seed ?? 1 });
  const dir = tempDir();
  const gStore = new ChannelStore(join(dir, 'g.db'), { durability: 'normal' });
  const intermediary = new Intermediary({ records: gStore.service, chain: CHAIN, holdTimeoutMs: o.holdTimeoutMs ?? 3000, fee: o.fees?.gateway ?? 0n, logger: silentLogger, frozen: (id) => o.frozen?.has(id) ?? false, secureClaim: o.secureClaim });
  const g = makeParty(network, dir, 'g', { policy: { acceptUpdate: intermediary.decide } }, undefined, gStore);
  intermediary.attach(g.agent);
  const fee = { virtualFee: o.fees?.devices ?? 0n };
  const a = makeParty(network, dir, 'a', { ...fee, ...o.devices });
  const b = makeParty(network, dir, 'b', { ...fee, ...(o.payee ?? o.devices) });
  live.push(a, b, g);
  const la = await a.agent.open(g.signer.address, { balances: [[100n, 100n]] });
  const lb = await b.agent.open(g.signer.address, { balances: [[50n, 100n]] });
  await until(() => g.agent.channels().filter((c) => c.phase === 'open').length === 2);
  network.setFaults(o.faults ?? {});
  return { network, a, b, g, la: la.id, lb: lb.id, intermediary };
}
