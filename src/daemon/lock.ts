// One daemon per catalog: a lock file next to it holding the owner's pid; a lock left by a dead process is taken over.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { processAlive } from '../catalog/catalog.ts';
import { CofreError } from '../errors/index.ts';

export interface DaemonLock {
  path: string;
  release(): void;
}

export function acquireDaemonLock(catalogPath: string): DaemonLock {
  const path = `${catalogPath}.daemon.lock`;
  // A fresh install has no state directory yet.
  mkdirSync(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return { path, release: () => rmSync(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) {
        throw new CofreError('SOURCE_BUSY', `another cofre daemon (pid ${pid}) is running on catalog ${catalogPath}`, {
          op: 'daemon.lock', path, hint: `stop it first (kill ${pid}); one daemon per catalog`,
        });
      }
      rmSync(path, { force: true }); // stale: its process is gone
    }
  }
  throw new CofreError('SOURCE_BUSY', `cannot take the daemon lock ${path}`, { op: 'daemon.lock', path });
}
