// The interim daemon: a first full backup of every source at once, incrementals on its interval, a clean stop.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.ts';
import { Catalog } from '../src/catalog/catalog.ts';
import { startDaemon } from '../src/daemon/daemon.ts';
import { EventBus } from '../src/observability/events.ts';
import { createLogger } from '../src/observability/logger.ts';
import { testConfig } from './helpers/config.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;

beforeAll(async () => {
  dir = await tempDir();
});

afterAll(async () => {
  await removeDir(dir);
});

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

describe('cofre daemon', () => {
  it('backs up every source at start, then incrementally on its interval, and stops cleanly', async () => {
    const config = testConfig(dir, {
      sources: { uploads: { kind: 'files', path: join(dir, 'uploads') }, logs: { kind: 'files', path: join(dir, 'logs') } },
    });
    await mkdir(join(dir, 'uploads'), { recursive: true });
    await writeFile(join(dir, 'uploads', 'a.txt'), 'a');
    const clock = new TestClock('2026-11-27T00:00:00Z');
    const bus = new EventBus();
    const finished: { source: string; type: string }[] = [];
    bus.on('backup.finished', (e) => finished.push({ source: e.source, type: e.type }));
    const daemon = await startDaemon(config, clock, bus, createLogger('silent'));
    await until(() => finished.length === 2);
    expect(finished).toEqual([{ source: 'uploads', type: 'full' }, { source: 'logs', type: 'full' }]);
    clock.advance(config.daemon.backupEveryMinutes * 60_000);
    await until(() => finished.length === 4);
    expect(finished.slice(2).map((f) => f.type)).toEqual(['incr', 'incr']);
    await daemon.stop();
    await daemon.done;
    const catalog = new Catalog(config.catalog.path, clock);
    expect(catalog.listBackups().map((b) => b.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
    catalog.close();
  });
});
