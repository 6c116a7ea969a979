// Public face of the crypto module.
export * from './envelope.ts';
export * from './keyrings.ts';
export * from './key-file.ts';
export * from './encryptor.ts';
