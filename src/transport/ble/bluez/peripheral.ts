import dbus from 'dbus-next';
import { randomBytes } from 'node:crypto';
import { TransportError } from '../../../errors.ts';
import type { Advert, BleLink, LinkEvents, PeripheralBackend } from '../link.ts';
import { ADVERT_UUID, advertData, LINK_UUID, RX_UUID, SERVICE_UUID, TX_UUID } from './gatt.ts';

// The peripheral role through BlueZ's D-Bus API, as on a Raspberry Pi with bluetoothd
// running: a GATT application (GattManager1) and an advertisement (LEAdvertisingManager1)
// exported by this process. BlueZ tells a D-Bus server nothing when a central connects:
// a central reads LINK (it learns its tag there), then writes one zero byte, and the link
// begins, so that the payee's first notification comes when the central can tell it is
// its own. It ends when BlueZ reports the device disconnected, or when the transport's
// probe gives up on it.

const { Interface, ACCESS_READ } = dbus.interface;
type Options = Record<string, dbus.Variant>;

class Characteristic extends Interface {
  notifying = false;
  value: Buffer = Buffer.alloc(0);
  constructor(
    readonly uuid: string,
    readonly flags: string[],
    readonly service: string,
    readonly onRead: (options: Options) => Buffer,
    readonly onWrite: (value: Buffer, options: Options) => void,
  ) {
    super('org.bluez.GattCharacteristic1');
  }
  get UUID(): string {
    return this.uuid;
  }
  get Service(): string {
    return this.service;
  }
  get Flags(): string[] {
    return this.flags;
  }
  get Value(): Buffer {
    return this.value;
  }
  ReadValue(options: Options): Buffer {
    return this.onRead(options);
  }
  WriteValue(value: Buffer, options: Options): void {
    this.onWrite(value, options);
  }
  StartNotify(): void {
    this.notifying = true;
  }
  StopNotify(): void {
    this.notifying = false;
  }
}
Characteristic.configureMembers({
  properties: {
    UUID: { signature: 's', access: ACCESS_READ },
    Service: { signature: 'o', access: ACCESS_READ },
    Flags: { signature: 'as', access: ACCESS_READ },
    Value: { signature: 'ay', access: ACCESS_READ },
  },
  methods: {
    ReadValue: { inSignature: 'a{sv}', outSignature: 'ay' },
    WriteValue: { inSignature: 'aya{sv}', outSignature: '' },
    StartNotify: {},
    StopNotify: {},
  },
});

class Service extends Interface {
  constructor() {
    super('org.bluez.GattService1');
  }
  get UUID(): string {
    return SERVICE_UUID;
  }
  get Primary(): boolean {
    return true;
  }
}
Service.configureMembers({ properties: { UUID: { signature: 's', access: ACCESS_READ }, Primary: { signature: 'b', access: ACCESS_READ } } });

class Advertisement extends Interface {
  constructor(readonly advert: Advert) {
    super('org.bluez.LEAdvertisement1');
  }
  get Type(): string {
    return 'peripheral';
  }
  get ServiceData(): Record<string, dbus.Variant> {
    return { [ADVERT_UUID]: new dbus.Variant('ay', Buffer.from(advertData(this.advert.address, this.advert.price))) };
  }
  get LocalName(): string {
    return this.advert.name;
  }
  Release(): void {}
}
Advertisement.configureMembers({
  properties: {
    Type: { signature: 's', access: ACCESS_READ },
    ServiceData: { signature: 'a{sv}', access: ACCESS_READ },
    LocalName: { signature: 's', access: ACCESS_READ },
  },
  methods: { Release: {} },
});

class ObjectManager extends Interface {
  constructor(readonly objects: () => Record<string, Record<string, Record<string, dbus.Variant>>>) {
    super('org.freedesktop.DBus.ObjectManager');
  }
  GetManagedObjects(): Record<string, Record<string, Record<string, dbus.Variant>>> {
    return this.objects();
  }
}
ObjectManager.configureMembers({ methods: { GetManagedObjects: { inSignature: '', outSignature: 'a{oa{sa{sv}}}' } } });

interface Central {
  tag: number;
  /** Until the central's ready byte: the link to hand to the transport. */
  link: BleLink | null;
  events: LinkEvents;
  closed: boolean;
}

export interface BluezPeripheralOptions {
  /** The adapter to serve on (default hci0). */
  adapter?: string;
  /** The system bus (default: a fresh connection). */
  bus?: dbus.MessageBus;
}

export class BluezPeripheral implements PeripheralBackend {
  readonly #adapter: string;
  readonly #bus: dbus.MessageBus;
  readonly #root = `/org/picopay/p${randomBytes(4).toString('hex')}`;
  /** Links by the central's device path. */
  readonly #centrals = new Map<string, Central>();
  readonly #watched = new Set<string>();
  #tx: Characteristic | undefined;
  #nextTag = 1;
  #stopped = false;

  constructor(options: BluezPeripheralOptions = {}) {
    this.#adapter = `/org/bluez/${options.adapter ?? 'hci0'}`;
    this.#bus = options.bus ?? dbus.systemBus();
  }

  async start(advert: Advert, accept: (link: BleLink) => LinkEvents): Promise<void> {
    const service = `${this.#root}/service0`;
    const noWrite = () => {
      throw new dbus.DBusError('org.bluez.Error.NotPermitted', 'not writable');
    };
    const noRead = (): Buffer => {
      throw new dbus.DBusError('org.bluez.Error.NotPermitted', 'not readable');
    };
    const rx = new Characteristic(RX_UUID, ['write', 'write-without-response'], service, noRead, (value, options) => {
      const central = this.#centrals.get(String(options.device?.value));
      if (!central || central.closed) return;
      if (!central.link) return central.events.packet(new Uint8Array(value));
      // The ready byte: the central knows its tag.
      const link = central.link;
      central.link = null;
      if (value.length === 1 && value[0] === 0) central.events = accept(link);
    });
    const tx = new Characteristic(TX_UUID, ['notify'], service, noRead, noWrite);
    const link = new Characteristic(LINK_UUID, ['read'], service, (options) => this.#linkUp(String(options.device?.value), Number(options.mtu?.value ?? 23)), noWrite);
    this.#tx = tx;
    const chars: [string, Characteristic][] = [
      [`${service}/rx`, rx],
      [`${service}/tx`, tx],
      [`${service}/link`, link],
    ];
    const objects = () => ({
      [service]: { 'org.bluez.GattService1': { UUID: new dbus.Variant('s', SERVICE_UUID), Primary: new dbus.Variant('b', true) } },
      ...Object.fromEntries(
        chars.map(([path, c]) => [path, { 'org.bluez.GattCharacteristic1': { UUID: new dbus.Variant('s', c.uuid), Service: new dbus.Variant('o', service), Flags: new dbus.Variant('as', c.flags) } }]),
      ),
    });
    this.#bus.export(this.#root, new ObjectManager(objects));
    this.#bus.export(service, new Service());
    for (const [path, c] of chars) this.#bus.export(path, c);
    this.#bus.export(`${this.#root}/advert0`, new Advertisement(advert));
    const adapter = await this.#bus.getProxyObject('org.bluez', this.#adapter);
    await adapter.getInterface('org.freedesktop.DBus.Properties').Set!('org.bluez.Adapter1', 'Powered', new dbus.Variant('b', true));
    await adapter.getInterface('org.bluez.GattManager1').RegisterApplication!(this.#root, {});
    await adapter.getInterface('org.bluez.LEAdvertisingManager1').RegisterAdvertisement!(`${this.#root}/advert0`, {});
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const central of this.#centrals.values()) this.#down(central);
    const adapter = await this.#bus.getProxyObject('org.bluez', this.#adapter).catch(() => undefined);
    await adapter?.getInterface('org.bluez.LEAdvertisingManager1').UnregisterAdvertisement!(`${this.#root}/advert0`).catch(() => {});
    await adapter?.getInterface('org.bluez.GattManager1').UnregisterApplication!(this.#root).catch(() => {});
    this.#bus.disconnect();
  }

  /** A central read LINK: a new link for that device (replacing any older one), and its tag. */
  #linkUp(device: string, mtu: number): Buffer {
    if (this.#stopped || !device.startsWith(this.#adapter)) throw new dbus.DBusError('org.bluez.Error.NotPermitted', 'not serving');
    const old = this.#centrals.get(device);
    if (old) this.#down(old);
    const central: Central = { tag: this.#tag(), link: null, events: { packet: () => {}, closed: () => {} }, closed: false };
    this.#centrals.set(device, central);
    this.#watch(device);
    const link: BleLink = {
      // One byte of every notification is the tag.
      mtu: Math.max(23, Math.min(517, mtu)) - 1,
      send: async (packet) => this.#notify(central, packet),
      close: async () => {
        this.#down(central);
        await this.#disconnect(device);
      },
    };
    central.link = link;
    return Buffer.from([central.tag]);
  }

  #notify(central: Central, packet: Uint8Array): void {
    const tx = this.#tx;
    if (central.closed || !tx) throw new TransportError('the BLE link is closed');
    if (!tx.notifying) throw new TransportError('no central subscribed to notifications');
    tx.value = Buffer.concat([Buffer.from([central.tag]), packet]);
    Interface.emitPropertiesChanged(tx, { Value: tx.value }, []);
  }

  #tag(): number {
    const used = new Set([...this.#centrals.values()].filter((c) => !c.closed).map((c) => c.tag));
    for (let i = 0; i < 255; i++) {
      const tag = this.#nextTag;
      this.#nextTag = (this.#nextTag % 255) + 1;
      if (!used.has(tag)) return tag;
    }
    throw new dbus.DBusError('org.bluez.Error.Failed', 'too many centrals');
  }

  /** Ends the link when BlueZ says the device disconnected (and stops listening for that device). */
  #watch(device: string): void {
    if (this.#watched.has(device)) return;
    this.#watched.add(device);
    void this.#bus
      .getProxyObject('org.bluez', device)
      .then((object) => {
        const props = object.getInterface('org.freedesktop.DBus.Properties');
        const changed = (iface: string, values: Record<string, dbus.Variant>) => {
          if (iface !== 'org.bluez.Device1' || values.Connected?.value !== false) return;
          props.off('PropertiesChanged', changed);
          this.#watched.delete(device);
          const central = this.#centrals.get(device);
          if (central) this.#down(central);
        };
        props.on('PropertiesChanged', changed);
      })
      .catch(() => this.#watched.delete(device));
  }

  async #disconnect(device: string): Promise<void> {
    const object = await this.#bus.getProxyObject('org.bluez', device).catch(() => undefined);
    await object?.getInterface('org.bluez.Device1').Disconnect!().catch(() => {});
  }

  #down(central: Central): void {
    if (central.closed) return;
    central.closed = true;
    for (const [device, c] of this.#centrals) if (c === central) this.#centrals.delete(device);
    central.events.closed();
  }
}
