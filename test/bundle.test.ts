// The command line's bundle: scripts/bundle.ts makes it in place without taking anything from a process already
// running, and bin/cofre runs it only while nothing it was made from is newer (a file under src/, or node_modules'
// record of what npm installed); otherwise, or without a bundle, the sources. Stand-in trees: the real bin/cofre
// and bundler, this Node, and sources that say which one ran.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COFRE_BIN } from './helpers/cli.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let root: string;
const at = (seconds: number): Date => new Date(Date.UTC(2026, 0, 1) + seconds * 1000);

beforeAll(async () => {
  root = await tempDir();
  for (const d of ['bin', 'src/cli', 'dist/cli', 'node_modules/.bin']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(COFRE_BIN, join(root, 'bin', 'cofre'));
  symlinkSync(process.execPath, join(root, 'node_modules', '.bin', 'node'));
  writeFileSync(join(root, 'src', 'cli', 'main.ts'), "console.log('sources');\n");
  writeFileSync(join(root, 'dist', 'cli', 'main.js'), "console.log('bundle');\n");
  writeFileSync(join(root, 'node_modules', '.package-lock.json'), '{}\n');
});

afterAll(async () => {
  await removeDir(root);
});

function ran(): string {
  return execFileSync('sh', [join(root, 'bin', 'cofre')], { encoding: 'utf8', env: { ...process.env, HOME: root } }).trim();
}

function stamp(path: string, seconds: number): void {
  utimesSync(join(root, path), at(seconds), at(seconds));
}

describe('bin/cofre', () => {
  it('runs the bundle while it is the newest, the sources once anything it was made from changed', () => {
    stamp('src/cli/main.ts', 0);
    stamp('src/cli', 0);
    stamp('src', 0);
    stamp('node_modules/.package-lock.json', 0);
    stamp('dist/cli/main.js', 10);
    expect(ran()).toBe('bundle');

    stamp('src/cli/main.ts', 20); // edited since
    expect(ran()).toBe('sources');
    stamp('dist/cli/main.js', 30); // made again
    expect(ran()).toBe('bundle');

    writeFileSync(join(root, 'src', 'cli', 'added.ts'), ''); // a new file, now
    expect(ran()).toBe('sources');
    rmSync(join(root, 'src', 'cli', 'added.ts'));
    stamp('src/cli', 0);
    expect(ran()).toBe('bundle');

    stamp('node_modules/.package-lock.json', 40); // npm installed something since
    expect(ran()).toBe('sources');
    stamp('node_modules/.package-lock.json', 0);

    rmSync(join(root, 'dist'), { recursive: true });
    expect(ran()).toBe('sources');
  });
});

describe('scripts/bundle.ts', () => {
  it('adds a new bundle beside the old one, whose lazily imported chunks stay for processes started from it', () => {
    const tree = join(root, 'bundler');
    mkdirSync(join(tree, 'scripts'), { recursive: true });
    mkdirSync(join(tree, 'src', 'cli'), { recursive: true });
    copyFileSync(fileURLToPath(new URL('../scripts/bundle.ts', import.meta.url)), join(tree, 'scripts', 'bundle.ts'));
    symlinkSync(fileURLToPath(new URL('../node_modules', import.meta.url)), join(tree, 'node_modules'));
    writeFileSync(join(tree, 'src', 'cli', 'main.ts'), "const { word } = await import('./lazy.ts');\nconsole.log(word);\n");
    const bundle = (word: string): void => {
      writeFileSync(join(tree, 'src', 'cli', 'lazy.ts'), `export const word: string = '${word}';\n`);
      execFileSync(process.execPath, [join(tree, 'scripts', 'bundle.ts')], { encoding: 'utf8' });
      expect(execFileSync(process.execPath, [join(tree, 'dist', 'cli', 'main.js')], { encoding: 'utf8' }).trim()).toBe(word);
    };
    const dist = join(tree, 'dist', 'cli');
    const holding = (word: string): string[] => readdirSync(dist).filter((f) => f !== 'main.js' && readFileSync(join(dist, f), 'utf8').includes(`"${word}"`));
    bundle('one');
    const one = holding('one');
    expect(one).toHaveLength(1);
    bundle('two');
    // The first bundle's lazy chunk is still there (a daemon started from it may import it later), beside the new one.
    expect(holding('one')).toEqual(one);
    expect(holding('two')).toHaveLength(1);
    expect(readdirSync(join(tree, 'dist'))).toEqual(['cli']);

    // Chunks of earlier bundles go once they are 30 days old; the current bundle's stay, however old.
    for (const f of readdirSync(dist)) utimesSync(join(dist, f), at(0), at(0));
    const two = holding('two');
    bundle('two');
    expect(holding('one')).toEqual([]);
    expect(holding('two')).toEqual(two);
  });
});
