// Opens the configured regions: each driver wrapped with metrics, concurrency limit and retry.
import type { Clock } from '../clock.ts';
import type { RegionConfig } from '../config/index.ts';
import type { EventBus } from '../observability/events.ts';
import type { StorageDriver } from './driver.ts';
import { FsDriver } from './fs/driver.ts';
import { MemoryDriver } from './memory/driver.ts';
import { LimitedDriver, MeteredDriver, RetryingDriver } from './wrappers.ts';

/** Memory regions live as long as the process; tests reopen them by name within one process. */
const memoryRegions = new Map<string, MemoryDriver>();

export async function baseDriverFor(cfg: RegionConfig): Promise<StorageDriver> {
  switch (cfg.driver) {
    case 'fs':
      return new FsDriver(cfg.name, cfg.path);
    case 's3': {
      // Loaded only when an S3 region is configured: the AWS SDK costs ~35 MB of memory.
      const { S3Driver } = await import('./s3/driver.ts');
      return new S3Driver(cfg);
    }
    case 'memory': {
      let driver = memoryRegions.get(cfg.name);
      if (!driver) memoryRegions.set(cfg.name, (driver = new MemoryDriver(cfg.name)));
      return driver;
    }
  }
}

export async function openRegion(cfg: RegionConfig, clock: Clock, bus: EventBus): Promise<StorageDriver> {
  const metered = new MeteredDriver(await baseDriverFor(cfg), bus, clock);
  return new RetryingDriver(new LimitedDriver(metered, cfg.concurrency), cfg.retry, clock, bus);
}
