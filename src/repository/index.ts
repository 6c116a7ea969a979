// Public face of the repository module: layout, cofre.repo and manifests.
export * from './entries.ts';
export * from './layout.ts';
export * from './manifest.ts';
export * from './repo-file.ts';
