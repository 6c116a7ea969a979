// Opens a real job context (catalog, keys, regions) on a test config, collecting every event it emits.
import { afterAll, beforeAll } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.ts';
import type { Config } from '../../src/config/index.ts';
import { closeContext, openContext, type JobContext } from '../../src/jobs/context.ts';
import { EventBus, type CofreEvents, type EventName } from '../../src/observability/events.ts';
import { testConfig, type TestConfigOptions } from './config.ts';
import { removeDir, tempDir } from './tmp.ts';

export interface TestContext extends JobContext {
  events: { name: EventName; payload: CofreEvents[EventName] }[];
  close(): Promise<void>;
}

export async function openTestContext(config: Config, clock: Clock = systemClock): Promise<TestContext> {
  const bus = new EventBus();
  const events: TestContext['events'] = [];
  bus.onAny((name, payload) => events.push({ name, payload }));
  const ctx = await openContext({ config, clock, bus, createKey: true });
  return Object.assign(ctx, { events, close: () => closeContext(ctx) });
}

/**
 * A temporary directory and a context on its test config (with `opts`) for the whole test file: opened before its
 * first test and handed to `use`, closed and removed after its last.
 */
export function contextForFile(use: (dir: string, ctx: TestContext) => void, opts: TestConfigOptions = {}): void {
  let dir: string;
  let ctx: TestContext | undefined;
  beforeAll(async () => {
    dir = await tempDir();
    ctx = await openTestContext(testConfig(dir, opts));
    use(dir, ctx);
  });
  afterAll(async () => {
    await ctx?.close();
    await removeDir(dir);
  });
}
