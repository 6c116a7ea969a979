// Public face of the storage module.
export * from './driver.ts';
export * from './open.ts';
export * from './wrappers.ts';
export { FsDriver, fsyncPath } from './fs/driver.ts';
export { MemoryDriver } from './memory/driver.ts';
