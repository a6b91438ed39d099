import type { Signer } from '../src/crypto/keys.ts';
import type { Logger } from '../src/log.ts';
import type { Address } from '../src/model/types.ts';
import { BluezCentral } from '../src/transport/ble/bluez/central.ts';
import { BluezPeripheral } from '../src/transport/ble/bluez/peripheral.ts';
import type { CentralBackend, PeripheralBackend } from '../src/transport/ble/link.ts';
import { BleTransport } from '../src/transport/ble/transport.ts';

// A device's near link: BLE on BlueZ beside its MQTT link to the gateway. A payee
// advertises (peripheral); a payer connects to the payees it pays (central).

export interface NearConfig {
  role: 'payee' | 'payer';
  /** The BlueZ adapter (hci0, hci1, …). */
  adapter: string;
  /** A payee's advertised name and price per payment. */
  name?: string;
  price?: bigint;
  /** A payee: pass on the sealed frames of linked devices with no internet to the broker, and back. */
  relay?: boolean;
  /** A payer with no internet of its own: reach the gateway through this nearby payee, which relays. */
  via?: Address;
  /** Backends other than BlueZ (the tests' memory radio). */
  backend?: PeripheralBackend | CentralBackend;
}

export function startNear(signer: Signer, near: NearConfig, logger: Logger): Promise<BleTransport> {
  logger.info({ role: near.role, adapter: near.adapter }, 'BLE link');
  if (near.role === 'payee') {
    const backend = (near.backend as PeripheralBackend | undefined) ?? new BluezPeripheral({ adapter: near.adapter });
    return BleTransport.start({ signer, peripheral: { backend, name: near.name ?? 'picopay', price: near.price }, logger });
  }
  return BleTransport.start({ signer, central: (near.backend as CentralBackend | undefined) ?? new BluezCentral({ adapter: near.adapter }), logger });
}
