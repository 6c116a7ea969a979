// The typed event bus that jobs emit on; logging, metrics and (later) alerts subscribe. Jobs import nothing else.
import { EventEmitter } from 'node:events';

export interface CofreEvents {
  'backup.started': { runId: string; backupId: string; source: string; type: string; parent: string | null };
  'backup.finished': {
    runId: string;
    backupId: string;
    source: string;
    type: string;
    status: 'completed' | 'degraded';
    durationSeconds: number;
    finishedAtSeconds: number;
    sizeBytes: number;
    storedBytes: number;
    regionsOwed: string[];
  };
  'backup.failed': { runId: string; backupId: string; source: string; type: string; error: string };
  'run.interrupted': { runId: string; kind: string; source: string | null; backupId: string | null };
  'copy.failed': { backupId: string; region: string; object: string; error: string };
  'copy.written': { region: string; object: string; bytes: number };
  'restore.fallback': { backupId: string; region: string; object: string; problem: string; nextRegion: string | null };
  'restore.finished': { backupId: string; source: string; durationSeconds: number; files: number; bytes: number };
  /** A files or physical restore's files and bytes written so far (now and then, for a progress display). */
  'restore.progress': { backupId: string; source: string; files: number; bytes: number };
  'verify.finished': { ok: boolean; deep: boolean; problems: number; objectsChecked: number };
  /** Objects verified so far (after each one, for a progress display). */
  'verify.progress': { objectsChecked: number; bytesRead: number; problems: number };
  'storage.request': { region: string; op: string; ok: boolean; durationSeconds: number };
  'storage.retry': { region: string; op: string; attempt: number; error: string };
  'source.skipped': { source: string; path: string; reason: string };
  'keys.unreachable': { backupId: string; keyIds: string[] };
  'schedule.fired': { schedules: string[]; job: string; source: string | null; type: string | null; dueAt: string; reason: string };
  'rpo.breached': { source: string; ageSeconds: number | null; rpoSeconds: number };
  'config.reloaded': { file: string };
  'config.rejected': { file: string; error: string };
  'wal.pushed': { source: string; name: string; bytes: number; regionsOwed: string[]; alreadyStored: boolean };
  'wal.conflict': { source: string; name: string; region: string };
  'wal.fetched': { source: string; name: string; region: string };
  'drill.finished': {
    drillId: string;
    source: string;
    backupId: string;
    status: 'passed' | 'failed';
    region: string;
    rtoSeconds: number | null;
    dataAgeSeconds: number | null;
    phases: Record<string, number>;
    finishedAtSeconds: number;
    /** The checks that failed, each naming what differs (a table, an index, a file). */
    failures: string[];
  };
  'drill.rto_exceeded': { drillId: string; source: string; rtoSeconds: number; rtoTargetSeconds: number };
  'drill.stale': { source: string; lastPassedAt: string | null; maxAgeHours: number };
  'drill.cleaned': { drillId: string; source: string; workDir: string };
  'expire.finished': { backupsExpired: number; walSegmentsExpired: number; problems: number };
  'expire.locked': { source: string; backupId: string; region: string };
  'repository.rolled_back': { region: string; source: string; newestInRegion: string | null; newestInCatalog: string };
  /** A region that held the repository holds none now: not written to until `cofre heal --reinit`. */
  'region.lost': { region: string; error: string };
}

export type EventName = keyof CofreEvents;

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  emit<E extends EventName>(name: E, payload: CofreEvents[E]): void {
    this.emitter.emit(name, payload);
  }

  on<E extends EventName>(name: E, listener: (payload: CofreEvents[E]) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  onAny(listener: (name: EventName, payload: CofreEvents[EventName]) => void): () => void {
    const names: EventName[] = [
      'backup.started', 'backup.finished', 'backup.failed', 'run.interrupted', 'copy.failed', 'copy.written',
      'restore.fallback', 'restore.finished', 'restore.progress', 'verify.finished', 'verify.progress', 'storage.request', 'storage.retry', 'source.skipped',
      'keys.unreachable', 'schedule.fired', 'rpo.breached', 'config.reloaded', 'config.rejected',
      'wal.pushed', 'wal.conflict', 'wal.fetched', 'drill.finished', 'drill.rto_exceeded', 'drill.stale', 'drill.cleaned', 'expire.finished', 'expire.locked', 'repository.rolled_back',
      'region.lost',
    ];
    const offs = names.map((n) => this.on(n, (p) => listener(n, p)));
    return () => offs.forEach((off) => off());
  }
}
