// Bundles the command line (src/cli/main.ts, everything it imports, dependencies included) into dist/cli/, which
// bin/cofre runs instead of the sources while it is newer than every file under src/ and than node_modules'
// record of what npm installed. `npm install` runs it (`prepare`); `npm run bundle` too. A start loads a few
// files instead of ~500 modules each resolved, read and type-stripped: ~0.1 s less per command (a backup, every
// archive_command the daemon does not answer). What is imported lazily (each command's job, the AWS SDK) stays in
// chunks of its own, loaded as before only when needed.
// Without rolldown (a production install without dev dependencies) or when bundling fails, it says so and exits 0:
// bin/cofre then runs the sources, as it always could.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, 'dist', 'cli');
const next = join(root, 'dist', `cli.${process.pid}.new`);
/** Chunks of earlier bundles are kept this long: a daemon started from one may still import them lazily. */
const KEEP_OLD_CHUNKS_MS = 30 * 24 * 3600 * 1000;

try {
  const { build } = await import('rolldown');
  const started = performance.now();
  await build({
    input: join(root, 'src', 'cli', 'main.ts'),
    platform: 'node',
    logLevel: 'warn',
    output: { dir: next, format: 'esm' },
  });
  // Into place without taking anything from a process already running: the chunks first (their names carry a hash
  // of their content, so an earlier bundle's stay as they were), then the entry, renamed over the old one at once.
  mkdirSync(out, { recursive: true });
  const built = new Set(readdirSync(next));
  for (const name of built) if (name !== 'main.js') renameSync(join(next, name), join(out, name));
  renameSync(join(next, 'main.js'), join(out, 'main.js'));
  rmSync(next, { recursive: true, force: true });
  for (const name of readdirSync(out)) {
    if (!built.has(name) && Date.now() - statSync(join(out, name)).mtimeMs > KEEP_OLD_CHUNKS_MS) rmSync(join(out, name));
  }
  console.log(`cofre: bundled the command line into dist/cli in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} catch (err) {
  if (existsSync(next)) rmSync(next, { recursive: true, force: true });
  console.warn(`cofre: no bundle (${err instanceof Error ? err.message : String(err)}); bin/cofre runs the sources, ~0.1 s slower to start`);
}
