import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCAL_CHAIN } from '../src/chain/anvil.ts';
import { Agent } from '../src/client/agent.ts';
import { Progress } from '../src/cli/progress.ts';
import { writeKeystore } from '../src/crypto/keystore.ts';
import { Signer } from '../src/crypto/keys.ts';
import { createLogger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MemoryNetwork } from '../src/transport/memory.ts';

// Two agents, each with its own key and SQLite store, open a ledger channel over the
// memory transport and make 1,000 payments; half-way the payee is stopped and restarted
// from its store, and resumes where it was.

const PAYMENTS = Number(process.env.PICOPAY_DEMO_PAYMENTS ?? 1000);
const PRICE = 10n ** 15n; // 0.001 ETH
const eth = (wei: bigint): string => `${(Number(wei) / 1e18).toFixed(3)} ETH`;

const dir = mkdtempSync(join(tmpdir(), 'picopay-demo-'));
const log = createLogger('demo', process.env.PICOPAY_LOG ?? 'warn');
const network = new MemoryNetwork();

function startAgent(name: string, signer: Signer): { agent: Agent; store: ChannelStore } {
  const store = new ChannelStore(join(dir, `${name}.db`));
  const agent = new Agent({ signer, transport: network.endpoint(signer.address), store, chain: LOCAL_CHAIN, logger: log.child({ party: name }) });
  agent.start();
  return { agent, store };
}

const payerKey = Signer.random();
const payeeKey = Signer.random();
writeKeystore(join(dir, 'payer.key.json'), payerKey, '', { scryptN: 1 << 12 });
writeKeystore(join(dir, 'payee.key.json'), payeeKey, '', { scryptN: 1 << 12 });
console.log(`picopay ledger-channel demo in ${dir}`);
console.log(`  payer ${payerKey.address}\n  payee ${payeeKey.address}`);

const payer = startAgent('payer', payerKey);
let payee = startAgent('payee', payeeKey);
const channel = await payer.agent.open(payeeKey.address, { balances: [[2n * BigInt(PAYMENTS) * PRICE, 0n]] });
console.log(`  channel ${channel.id} open`);

const progress = new Progress('paying', PAYMENTS);
for (let i = 1; i <= PAYMENTS; i++) {
  await payer.agent.pay(channel.id, PRICE);
  if (i === PAYMENTS / 2) {
    // Restart the payee from its store: a new process would do exactly this.
    payee.agent.stop();
    payee.store.close();
    network.detach(payeeKey.address);
    payee = startAgent('payee', payeeKey);
    progress.stream.write(`${progress.stream.isTTY ? '\n' : ''}payee restarted from its store at version ${payee.agent.channel(channel.id).current.state.version}\n`);
  }
  if (i % 10 === 0 || i === PAYMENTS) progress.update(i, `${(i / progress.elapsed()).toFixed(0)} payments/s`);
}
progress.done();
await network.idle();

const a = payer.agent.channel(channel.id).current;
const b = payee.agent.channel(channel.id).current;
const agree = a.state.version === b.state.version && JSON.stringify(a.state.outcome.balances, (_, v) => String(v)) === JSON.stringify(b.state.outcome.balances, (_, v) => String(v));
const [payerBal, payeeBal] = a.state.outcome.balances[0]!;
console.log('\nSummary');
console.log(`  payments           ${PAYMENTS} of ${eth(PRICE)} in ${progress.elapsed().toFixed(1)} s`);
console.log(`  state version      payer ${a.state.version}, payee ${b.state.version}`);
console.log(`  payer balance      ${eth(payerBal)}`);
console.log(`  payee balance      ${eth(payeeBal)}`);
console.log(`  both sides agree   ${agree ? 'yes' : 'NO'}`);
payer.agent.stop();
payee.agent.stop();
payer.store.close();
payee.store.close();
process.exit(agree && payeeBal === BigInt(PAYMENTS) * PRICE ? 0 : 1);
