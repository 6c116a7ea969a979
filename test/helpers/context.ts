// Opens a real job context (catalog, keys, regions) on a test config, collecting every event it emits.
import { systemClock, type Clock } from '../../src/clock.ts';
import type { Config } from '../../src/config/index.ts';
import { closeContext, openContext, type JobContext } from '../../src/jobs/context.ts';
import { EventBus, type CofreEvents, type EventName } from '../../src/observability/events.ts';

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
