export * from './keys.ts';
export * from './verify.ts';
export * from './keystore.ts';
