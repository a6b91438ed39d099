import dbus from 'dbus-next';
import { createBluetooth } from 'node-ble';
import type NodeBle from 'node-ble';
import { TransportError } from '../../../errors.ts';
import type { Address } from '../../../model/types.ts';
import type { BleLink, CentralBackend, LinkEvents, Sighting } from '../link.ts';
import { ADVERT_UUID, devicePath, LINK_UUID, readAdvert, RX_UUID, SERVICE_UUID, TX_UUID } from './gatt.ts';
import { lower } from '../../address.ts';

// The central role through BlueZ's D-Bus API with node-ble. Every step has a timeout.
// BlueZ misses advertisements now and then, so discovery runs in short windows; and a
// peripheral that restarted can leave BlueZ with a stale cache of its GATT database
// ("service not available"), so a failed connection removes the device from BlueZ and
// the next attempt discovers it afresh.

const WINDOW_MS = 2_000;
/** How long a device that failed its handshake is passed over, and how many are remembered. */
const SHUN_MS = 60_000;
const SHUNNED_MAX = 256;
/** What a central writes once it knows its tag: the payee starts the handshake then. */
const READY = new Uint8Array([0]);

/** node-ble's objects keep their D-Bus helper out of its typings. */
interface Helper {
  prop(name: string): Promise<unknown>;
  callMethod(name: string, ...args: unknown[]): Promise<unknown>;
  set(name: string, value: dbus.Variant): Promise<void>;
}
const helperOf = (o: object): Helper => (o as { helper: Helper }).helper;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TransportError(`BLE ${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface BluezCentralOptions {
  /** The adapter to scan and connect with (default hci0). */
  adapter?: string;
}

export class BluezCentral implements CentralBackend {
  readonly #adapterName: string;
  readonly #bluetooth: ReturnType<typeof createBluetooth>;
  #adapter: Promise<NodeBle.Adapter> | undefined;
  readonly #devices = new Map<string, NodeBle.Device>();
  /** MACs whose handshake failed, and until when they are passed over. */
  readonly #shunned = new Map<string, number>();
  /** The MAC a picopay address was last seen at. */
  readonly #seen = new Map<Address, string>();

  constructor(options: BluezCentralOptions = {}) {
    this.#adapterName = options.adapter ?? 'hci0';
    this.#bluetooth = createBluetooth();
  }

  async scan(ms: number): Promise<Sighting[]> {
    const adapter = await this.#ready();
    const found = new Map<Address, Sighting>();
    // Listens the whole time: the strongest signal heard counts.
    await this.#discover(adapter, async () => {
      for (const sighting of await this.#sightings(adapter)) {
        const had = found.get(sighting.address);
        if (!had || (sighting.rssi ?? -999) > (had.rssi ?? -999)) found.set(sighting.address, sighting);
      }
      return false;
    }, ms);
    return [...found.values()];
  }

  async connect(peer: Address, events: LinkEvents, timeoutMs: number): Promise<BleLink> {
    const adapter = await this.#ready();
    const target = lower(peer);
    const end = Date.now() + timeoutMs;
    let mac = this.#seen.get(target);
    if (!mac) {
      await this.#discover(adapter, async () => {
        // Reading the sightings notes where each payee was seen.
        await this.#sightings(adapter);
        mac = this.#seen.get(target);
        return mac !== undefined;
      }, timeoutMs);
    }
    if (!mac) throw new TransportError(`${peer} is not in range`);
    try {
      return await this.#link(adapter, mac, events, Math.max(1_000, end - Date.now()));
    } catch (err) {
      // A stale cache or a peripheral that moved: forget it, so the next attempt discovers it afresh.
      this.#seen.delete(target);
      this.#devices.delete(mac);
      await helperOf(adapter).callMethod('RemoveDevice', devicePath(this.#adapterName, mac)).catch(() => {});
      throw err instanceof TransportError ? err : new TransportError(`BLE connect failed: ${(err as Error).message}`);
    }
  }

  refused(peer: Address): void {
    const mac = this.#seen.get(lower(peer));
    if (!mac) return;
    this.#seen.delete(lower(peer));
    const now = Date.now();
    for (const [m, until] of this.#shunned) if (until < now) this.#shunned.delete(m);
    if (this.#shunned.size < SHUNNED_MAX) this.#shunned.set(mac, now + SHUN_MS);
  }

  async stop(): Promise<void> {
    this.#bluetooth.destroy();
  }

  #ready(): Promise<NodeBle.Adapter> {
    this.#adapter ??= withTimeout(this.#bluetooth.bluetooth.getAdapter(this.#adapterName), 10_000, 'adapter').then(async (adapter) => {
      if (!(await adapter.isPowered())) await helperOf(adapter).set('Powered', new dbus.Variant('b', true));
      return adapter;
    });
    this.#adapter.catch(() => (this.#adapter = undefined));
    return this.#adapter;
  }

  /** Runs discovery in short windows until `done` says so or `ms` is up. */
  async #discover(adapter: NodeBle.Adapter, done: () => Promise<boolean>, ms: number): Promise<void> {
    const end = Date.now() + ms;
    try {
      while (Date.now() < end) {
        if (!(await adapter.isDiscovering())) await adapter.startDiscovery().catch(() => {});
        const window = Math.min(WINDOW_MS, end - Date.now());
        const windowEnd = Date.now() + window;
        while (Date.now() < windowEnd) {
          if (await done()) return;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        await adapter.stopDiscovery().catch(() => {});
      }
    } finally {
      if (await adapter.isDiscovering().catch(() => false)) await adapter.stopDiscovery().catch(() => {});
    }
  }

  /** The picopay payees among the devices BlueZ knows now. */
  async #sightings(adapter: NodeBle.Adapter): Promise<Sighting[]> {
    const out: Sighting[] = [];
    for (const mac of await adapter.devices()) {
      const device = await this.#device(adapter, mac).catch(() => undefined);
      if (!device) continue;
      const data = (await device.getServiceData().catch(() => ({}))) as Record<string, unknown>;
      const raw = data[ADVERT_UUID];
      const advert = readAdvert(raw instanceof Uint8Array ? new Uint8Array(raw) : undefined);
      if (!advert || (this.#shunned.get(mac) ?? 0) > Date.now()) continue;
      const { address, price } = advert;
      this.#seen.set(address, mac);
      const name = await device.getName().catch(() => device.getAlias().catch(() => ''));
      // 127 is HCI's "not available".
      const rssi = Number(await device.getRSSI().catch(() => NaN));
      out.push({ address, name, price, rssi: Number.isFinite(rssi) && rssi !== 127 ? rssi : null });
    }
    return out;
  }

  /** One node-ble object per device: each new one adds D-Bus listeners that live as long as the bus. */
  async #device(adapter: NodeBle.Adapter, mac: string): Promise<NodeBle.Device> {
    let device = this.#devices.get(mac);
    if (!device) {
      device = await adapter.getDevice(mac);
      this.#devices.set(mac, device);
    }
    return device;
  }

  async #link(adapter: NodeBle.Adapter, mac: string, events: LinkEvents, timeoutMs: number): Promise<BleLink> {
    const device = await withTimeout(this.#device(adapter, mac), timeoutMs, 'device lookup');
    await withTimeout(device.connect(), timeoutMs, 'connect');
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      device.off('disconnect', close);
      events.closed();
    };
    try {
      const gatt = await withTimeout(device.gatt(), timeoutMs, 'service discovery');
      const service = await withTimeout(gatt.getPrimaryService(SERVICE_UUID), timeoutMs, 'service');
      const rx = await service.getCharacteristic(RX_UUID);
      const tx = await service.getCharacteristic(TX_UUID);
      const link = await service.getCharacteristic(LINK_UUID);
      // Notifications for every central arrive here; ours carry our tag, learnt from LINK.
      let tag: number | undefined;
      tx.removeAllListeners('valuechanged');
      tx.on('valuechanged', (value: Buffer) => {
        if (!closed && tag !== undefined && value[0] === tag && value.length > 1) events.packet(new Uint8Array(value.subarray(1)));
      });
      device.once('disconnect', close);
      await withTimeout(tx.startNotifications(), timeoutMs, 'subscribe');
      const mtu = Number(await helperOf(rx).prop('MTU').catch(() => 23)) || 23;
      const answer = await withTimeout(link.readValue(), timeoutMs, 'link read');
      if (answer.length !== 1) throw new TransportError('not a picopay link answer');
      tag = answer[0]!;
      // Only now does the payee speak: nothing of ours comes before we know our tag.
      await withTimeout(rx.writeValue(Buffer.from(READY), { type: 'request' }), timeoutMs, 'ready');
      return {
        mtu: Math.max(23, Math.min(517, mtu)),
        send: async (packet, reliable) => {
          if (closed) throw new TransportError('the BLE link is closed');
          await withTimeout(rx.writeValue(Buffer.from(packet), { type: reliable ? 'request' : 'command' }), 10_000, 'write');
        },
        close: async () => {
          close();
          await withTimeout(device.disconnect(), 10_000, 'disconnect').catch(() => {});
        },
      };
    } catch (err) {
      close();
      await device.disconnect().catch(() => {});
      throw err;
    }
  }
}
