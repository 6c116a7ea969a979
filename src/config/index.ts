// Public face of the config module.
export * from './schema.ts';
export * from './load.ts';
export * from './print.ts';
export * from './own-state.ts';
export { Secret, REDACTED } from './secret.ts';
