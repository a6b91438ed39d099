import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevnet, type Devnet } from '../../src/chain/index.ts';
import { runLocal } from '../../demo/local.ts';
import { PicopayProcess } from '../../demo/processes.ts';
import { DYNSEC_PLUGIN, mosquittoInstalled, startMosquitto, type Mosquitto } from '../transport/helpers.ts';

// The whole network as separate OS processes on real parts: anvil, the gateway, a
// hotspot and a client device, over the embedded broker and over Mosquitto. Smaller
// downloads than `npm start`; the checks are the same.

const SMALL = { downloadBytes: 1_000_000, verbose: false, cleanup: true };

describe('picopay network, separate processes', () => {
  it('embedded broker: pay per 100 KB, settle, close on-chain, balances add up', async () => {
    const result = await runLocal(SMALL);
    expect(result.checks.filter(([, ok]) => !ok)).toEqual([]);
    expect(result.bytes).toBe(1_000_000);
    expect(result.paid).toBe(10n * 10n ** 14n); // ceil(1,000,000 / 102,400) = 10 units
  }, 300_000);

  describe.runIf(mosquittoInstalled)('Mosquitto', () => {
    let mosquitto: Mosquitto;
    beforeAll(async () => {
      mosquitto = await startMosquitto();
    });
    afterAll(async () => mosquitto?.stop());

    it('the same flow through a real Mosquitto broker', async () => {
      const result = await runLocal({ ...SMALL, mqttUrl: mosquitto.url });
      expect(result.checks.filter(([, ok]) => !ok)).toEqual([]);
    }, 300_000);
  });

  describe.runIf(mosquittoInstalled && DYNSEC_PLUGIN)('Mosquitto with logins the gateway issues', () => {
    const admin = { username: 'picopay-admin', password: 'admin-secret' };
    let mosquitto: Mosquitto;
    beforeAll(async () => {
      mosquitto = await startMosquitto({ dynsec: admin });
    });
    afterAll(async () => mosquitto?.stop());

    it('every process logs in by key, enrolled through the gateway; anonymous clients get nothing', async () => {
      const result = await runLocal({ ...SMALL, mqttUrl: mosquitto.url, mqttAdmin: admin });
      expect(result.checks.filter(([, ok]) => !ok)).toEqual([]);
    }, 300_000);
  });

  describe('gateway outage', () => {
    let devnet: Devnet;
    let broker: PicopayProcess;
    let mqttUrl: string;
    beforeAll(async () => {
      // Chain and broker outlive the gateway here, as they would in a deployment.
      devnet = await startDevnet();
      broker = new PicopayProcess('broker', ['broker', '--port', '0'], { env: { PICOPAY_LOG: 'warn' } });
      mqttUrl = (await broker.next('ready')).mqttUrl as string;
    });
    afterAll(async () => {
      await broker?.stop();
      await devnet?.stop();
    });

    it('devices keep paying while the gateway is down; it restarts, resynchronises and settles', async () => {
      let killedBeforeDownloadEnded = false;
      const result = await runLocal({
        ...SMALL,
        downloadBytes: 3_000_000,
        logLevel: process.env.E2E_LOG ?? 'warn',
        devnet,
        mqttUrl,
        hooks: {
          afterVirtualOpen: async (gateway) => {
            await gateway.kill();
            killedBeforeDownloadEnded = true;
          },
          afterDownload: (gateway) => gateway.restart(),
        },
      });
      expect(killedBeforeDownloadEnded).toBe(true);
      expect(result.bytes).toBe(3_000_000);
      expect(result.paid).toBe(30n * 10n ** 14n);
      expect(result.checks.filter(([, ok]) => !ok)).toEqual([]);
    }, 300_000);
  });
});
