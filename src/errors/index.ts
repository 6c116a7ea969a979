// Public face of the errors module.
export * from './codes.ts';
export * from './cofre-error.ts';
