// Key rotation keeps old backups readable, a lost key file is not replaced by a new key, processes starting together
// on a new repository share one whole key; the storage wrappers retry transient failures and cap concurrency.
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.ts';
import { validate } from '../src/config/index.ts';
import { createKeyFile } from '../src/crypto/index.ts';
import { CofreError } from '../src/errors/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { EventBus } from '../src/observability/events.ts';
import { LimitedDriver, MemoryDriver, readAll, RetryingDriver } from '../src/storage/index.ts';
import { rawTestConfig } from './helpers/config.ts';
import { openTestContext } from './helpers/context.ts';
import { snapshotTree } from './helpers/tree.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;

beforeAll(async () => {
  dir = await tempDir();
});

afterAll(async () => {
  await removeDir(dir);
});

describe('key rotation', () => {
  it('writes new backups with the new key and still reads those of the previous one', async () => {
    const src = join(dir, 'data', 'uploads');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'a.txt'), 'written under key one');
    const oldKey = join(dir, 'keys', 'cofre.key');
    const first = await openTestContext(validate(rawTestConfig(dir), 'test'));
    const oldId = (await runBackup(first, { source: 'uploads', type: 'full' })).backupId;
    const oldTree = await snapshotTree(src);
    await first.close();

    const newKey = join(dir, 'keys', 'cofre-2.key');
    createKeyFile(newKey);
    const raw = rawTestConfig(dir);
    raw.encryption = { provider: 'local', keyFile: newKey, previousKeyFiles: [oldKey] };
    const rotated = await openTestContext(validate(raw, 'test'));
    try {
      await writeFile(join(src, 'b.txt'), 'written under key two');
      const newId = (await runBackup(rotated, { source: 'uploads', type: 'incr' })).backupId;
      expect((await runVerify(rotated, { deep: true })).problems).toEqual([]);
      await runRestore(rotated, { source: 'uploads', to: join(dir, 'r-old'), backupId: oldId });
      expect(await snapshotTree(join(dir, 'r-old'))).toEqual(oldTree);
      await runRestore(rotated, { source: 'uploads', to: join(dir, 'r-new'), backupId: newId });
      expect(await snapshotTree(join(dir, 'r-new'))).toEqual(await snapshotTree(src));
    } finally {
      await rotated.close();
    }

    // Without the previous key, the old backup names the key it needs.
    raw.encryption = { provider: 'local', keyFile: newKey };
    const forgetful = await openTestContext(validate(raw, 'test'));
    try {
      const err = await runRestore(forgetful, { source: 'uploads', to: join(dir, 'r-fail'), backupId: oldId }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'KEY_MISMATCH' });
    } finally {
      await forgetful.close();
    }
  });
});

describe('a lost key file', () => {
  it('is not replaced by a new key once the repository exists: the operator is sent to the escrow', async () => {
    const own = join(dir, 'lost-key');
    await mkdir(join(own, 'data', 'uploads'), { recursive: true });
    await writeFile(join(own, 'data', 'uploads', 'a.txt'), 'under the first key');
    const first = await openTestContext(validate(rawTestConfig(own), 'test'));
    const id = (await runBackup(first, { source: 'uploads', type: 'full' })).backupId;
    await first.close();
    const keyFile = join(own, 'keys', 'cofre.key');
    await rename(keyFile, join(own, 'escrow.key'));
    await expect(openTestContext(validate(rawTestConfig(own), 'test'))).rejects.toMatchObject({
      code: 'KEY_FILE_INVALID', message: `key file ${keyFile} does not exist`, hint: expect.stringContaining('escrow'),
    });
    expect(existsSync(keyFile)).toBe(false);
    // Back from escrow, everything reads again.
    await rename(join(own, 'escrow.key'), keyFile);
    const back = await openTestContext(validate(rawTestConfig(own), 'test'));
    try {
      await runRestore(back, { source: 'uploads', to: join(own, 'restored'), backupId: id });
      expect(await snapshotTree(join(own, 'restored'))).toEqual(await snapshotTree(join(own, 'data', 'uploads')));
    } finally {
      await back.close();
    }
  });
});

describe('a new key file', () => {
  it('is created whole once when processes start together: each of them reads that one key', async () => {
    // PostgreSQL's archive_command (cofre wal-push) can start beside the first backup of a repository. Each process
    // here waits for a go file, then loads the key, creating it if missing.
    const own = join(dir, 'together');
    const keyFile = join(own, 'keys', 'cofre.key');
    const go = join(own, 'go');
    await mkdir(own, { recursive: true });
    const script = [
      `import { existsSync } from 'node:fs';`,
      `import { loadKeyFile } from ${JSON.stringify(new URL('../src/crypto/key-file.ts', import.meta.url).href)};`,
      `while (!existsSync(${JSON.stringify(go)}));`,
      `process.stdout.write(loadKeyFile(${JSON.stringify(keyFile)}, { create: true }).id);`,
    ].join('\n');
    const runs = Array.from({ length: 8 }, () => new Promise<{ code: number | null; out: string; err: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, out, err }));
    }));
    await new Promise((r) => setTimeout(r, 500));
    await writeFile(go, '');
    const results = await Promise.all(runs);
    for (const r of results) expect(r.code, r.err).toBe(0);
    expect(new Set(results.map((r) => r.out)).size).toBe(1);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(await readdir(join(own, 'keys'))).toEqual(['cofre.key']);
  });
});

/** A memory region that fails its next `failures` operations with a retryable error (fault injection). */
class FlakyRegion extends MemoryDriver {
  failures = 0;
  calls = 0;
  private maybeFail(): void {
    this.calls++;
    if (this.failures > 0) {
      this.failures--;
      throw new CofreError('STORAGE_UNAVAILABLE', 'connection reset', { op: 'test' });
    }
  }
  override async stat(key: string) { this.maybeFail(); return super.stat(key); }
  override async create(key: string, body: Buffer) { this.maybeFail(); return super.create(key, body); }
}

describe('storage wrappers', () => {
  it('retries transient failures with backoff on the injected clock, then gives up', async () => {
    const flaky = new FlakyRegion('flaky');
    const clock = new TestClock();
    const bus = new EventBus();
    const retries: number[] = [];
    bus.on('storage.retry', (e) => retries.push(e.attempt));
    const d = new RetryingDriver(flaky, { attempts: 3, baseDelayMs: 100, maxDelayMs: 1000 }, clock, bus);
    flaky.failures = 2;
    const pending = d.create('k', Buffer.from('v'));
    for (let i = 0; i < 10 && retries.length < 2; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(1000);
    }
    await expect(pending).resolves.toEqual({ key: 'k', size: 1 });
    expect(retries).toEqual([1, 2]);
    expect((await readAll(await d.read('k'))).toString()).toBe('v');

    flaky.failures = 5;
    const failing = d.stat('k').catch((e: unknown) => e);
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(1000);
    }
    expect(await failing).toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
    expect(flaky.calls).toBe(3 + 3); // create: 2 failures then success; stat: 3 failed attempts, then it gives up
  });

  it('keeps at most `limit` operations in flight', async () => {
    let active = 0;
    let peak = 0;
    class Slow extends MemoryDriver {
      override async stat(key: string) {
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setImmediate(r));
        active--;
        return super.stat(key);
      }
    }
    const d = new LimitedDriver(new Slow('slow'), 3);
    await Promise.all(Array.from({ length: 20 }, (_, i) => d.stat(`k${i}`)));
    expect(peak).toBe(3);
  });
});
