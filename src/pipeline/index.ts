// Public face of the pipeline module.
export * from './fanout.ts';
export * from './read-object.ts';
export * from './transforms.ts';
export * from './write-object.ts';
export * from './zstd-workers.ts';
export * from './zstd-frames.ts';
