import { ConfigError } from '../errors.ts';

const WEI_PER_ETH = 10n ** 18n;

/** "0.5", "0.5eth" or "1000wei" → wei. */
export function parseAmount(text: string, what = 'amount'): bigint {
  const m = /^\s*(\d+)(?:\.(\d{1,18}))?\s*(eth|wei)?\s*$/i.exec(text);
  if (!m) throw new ConfigError(`${what}: expected an amount such as 0.5 or 0.5eth or 1000wei, got "${text}"`);
  const unit = (m[3] ?? 'eth').toLowerCase();
  if (unit === 'wei') {
    if (m[2]) throw new ConfigError(`${what}: wei amounts are whole numbers`);
    return BigInt(m[1]!);
  }
  return BigInt(m[1]!) * WEI_PER_ETH + BigInt((m[2] ?? '').padEnd(18, '0'));
}

/** wei → "1.234567 ETH" (up to 6 decimals, trailing zeros dropped). */
export function formatEth(wei: bigint): string {
  const sign = wei < 0n ? '-' : '';
  const abs = wei < 0n ? -wei : wei;
  const whole = abs / WEI_PER_ETH;
  const frac = ((abs % WEI_PER_ETH) / 10n ** 12n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${sign}${whole}${frac ? `.${frac}` : ''} ETH`;
}
