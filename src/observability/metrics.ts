// The Prometheus registry and the metrics fed from events. Label values are bounded sets: never ids, paths or messages.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EventBus } from './events.ts';

export interface Metrics {
  registry: Registry;
  detach: () => void;
}

/** Values read at scrape time from the daemon's current state (catalog, scheduler, region probes). */
export interface MetricsState {
  recoveryPoints(): { source: string; seconds: number }[];
  walArchived(): { source: string; seconds: number }[];
  walReady?(): { source: string; count: number }[];
  targets(): { source: string; rpoSeconds?: number; rtoSeconds?: number }[];
  nextRuns(): { source: string; job: string; seconds: number }[];
  regions(): { region: string; up: boolean; copiesOwed: number }[];
  /** Per source: the last finished drill (status, phase durations) and the last passed one (when, its RTO). */
  drills?(): { source: string; lastPassedSeconds: number | null; rtoSeconds: number | null; lastStatus: 'passed' | 'failed'; phases: Record<string, number> }[];
}

function stateGauge(registry: Registry, name: string, help: string, labelNames: string[], read: (g: Gauge) => void): void {
  new Gauge({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      read(this);
    },
  });
}

export function createMetrics(bus: EventBus, version: string, state?: MetricsState): Metrics {
  const registry = new Registry();
  const buildInfo = new Gauge({ name: 'cofre_build_info', help: 'cofre version', labelNames: ['version'], registers: [registry] });
  buildInfo.set({ version }, 1);
  const lastSuccess = new Gauge({
    name: 'cofre_backup_last_success_timestamp_seconds', help: 'End time of the last successful backup',
    labelNames: ['source', 'type'], registers: [registry],
  });
  const lastStatus = new Gauge({
    name: 'cofre_backup_last_status', help: 'Last backup result: 1 completed, 0.5 degraded, 0 failed',
    labelNames: ['source', 'type'], registers: [registry],
  });
  const duration = new Histogram({
    name: 'cofre_backup_duration_seconds', help: 'Backup wall time', labelNames: ['source', 'type'],
    buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600], registers: [registry],
  });
  const size = new Gauge({ name: 'cofre_backup_size_bytes', help: 'Bytes read from the source by the last backup', labelNames: ['source', 'type'], registers: [registry] });
  const stored = new Gauge({ name: 'cofre_backup_stored_bytes', help: 'Bytes stored per region by the last backup', labelNames: ['source', 'type'], registers: [registry] });
  const runs = new Counter({ name: 'cofre_backup_runs_total', help: 'Backup runs by result', labelNames: ['source', 'type', 'result'], registers: [registry] });
  const uploaded = new Counter({ name: 'cofre_upload_bytes_total', help: 'Bytes written to a region', labelNames: ['region'], registers: [registry] });
  const requests = new Counter({ name: 'cofre_storage_requests_total', help: 'Storage requests by result', labelNames: ['region', 'op', 'result'], registers: [registry] });
  const retries = new Counter({ name: 'cofre_storage_retries_total', help: 'Storage retries', labelNames: ['region', 'op'], registers: [registry] });
  const copyFailures = new Counter({ name: 'cofre_copy_failures_total', help: 'Region copies that failed during a backup', labelNames: ['region'], registers: [registry] });
  const skipped = new Counter({
    name: 'cofre_source_skipped_total', help: 'Paths a backup left out of its source (unreadable, vanished, not a file, directory or symlink, cofre\'s own state)',
    labelNames: ['source'], registers: [registry],
  });

  if (state) {
    stateGauge(registry, 'cofre_recovery_point_timestamp_seconds', 'Newest recoverable point per source', ['source'], (g) => {
      for (const r of state.recoveryPoints()) g.set({ source: r.source }, r.seconds);
    });
    stateGauge(registry, 'cofre_rpo_target_seconds', 'Recovery point objective per source', ['source'], (g) => {
      for (const t of state.targets()) if (t.rpoSeconds) g.set({ source: t.source }, t.rpoSeconds);
    });
    stateGauge(registry, 'cofre_rto_target_seconds', 'Recovery time objective per source', ['source'], (g) => {
      for (const t of state.targets()) if (t.rtoSeconds) g.set({ source: t.source }, t.rtoSeconds);
    });
    stateGauge(registry, 'cofre_next_run_timestamp_seconds', 'Next scheduled run per source and job', ['source', 'job'], (g) => {
      for (const n of state.nextRuns()) g.set({ source: n.source, job: n.job }, n.seconds);
    });
    stateGauge(registry, 'cofre_region_up', 'Whether the region answered its last probe', ['region'], (g) => {
      for (const r of state.regions()) g.set({ region: r.region }, r.up ? 1 : 0);
    });
    stateGauge(registry, 'cofre_region_copies_owed', 'Backup copies a region still owes', ['region'], (g) => {
      for (const r of state.regions()) g.set({ region: r.region }, r.copiesOwed);
    });
  }
  stateGauge(registry, 'cofre_wal_last_archived_timestamp_seconds', 'Time of the last WAL segment stored at quorum', ['source'], (g) => {
    for (const w of state?.walArchived() ?? []) g.set({ source: w.source }, w.seconds);
  });
  stateGauge(registry, 'cofre_wal_ready_segments', 'WAL segments PostgreSQL marked ready and not yet archived', ['source'], (g) => {
    for (const r of state?.walReady?.() ?? []) g.set({ source: r.source }, r.count);
  });
  stateGauge(registry, 'cofre_drill_last_success_timestamp_seconds', 'When the last restore drill that passed finished', ['source'], (g) => {
    for (const d of state?.drills?.() ?? []) if (d.lastPassedSeconds !== null) g.set({ source: d.source }, d.lastPassedSeconds);
  });
  stateGauge(registry, 'cofre_drill_last_status', 'Whether the last restore drill passed (1) or failed (0)', ['source'], (g) => {
    for (const d of state?.drills?.() ?? []) g.set({ source: d.source }, d.lastStatus === 'passed' ? 1 : 0);
  });
  stateGauge(registry, 'cofre_drill_rto_seconds', 'Measured RTO: restore start until the data accepted queries, last passed drill', ['source'], (g) => {
    for (const d of state?.drills?.() ?? []) if (d.rtoSeconds !== null) g.set({ source: d.source }, d.rtoSeconds);
  });
  stateGauge(registry, 'cofre_drill_duration_seconds', 'Duration of each phase of the last restore drill', ['source', 'phase'], (g) => {
    for (const d of state?.drills?.() ?? []) for (const [phase, v] of Object.entries(d.phases)) g.set({ source: d.source, phase }, v);
  });
  const rpoBreaches = new Counter({ name: 'cofre_rpo_breaches_total', help: 'Times a source was found older than its RPO', labelNames: ['source'], registers: [registry] });

  const offs = [
    bus.on('rpo.breached', (e) => rpoBreaches.inc({ source: e.source })),
    bus.on('backup.finished', (e) => {
      const labels = { source: e.source, type: e.type };
      lastSuccess.set(labels, e.finishedAtSeconds);
      lastStatus.set(labels, e.status === 'completed' ? 1 : 0.5);
      duration.observe(labels, e.durationSeconds);
      size.set(labels, e.sizeBytes);
      stored.set(labels, e.storedBytes);
      runs.inc({ ...labels, result: e.status });
    }),
    bus.on('backup.failed', (e) => {
      lastStatus.set({ source: e.source, type: e.type }, 0);
      runs.inc({ source: e.source, type: e.type, result: 'failed' });
    }),
    bus.on('copy.written', (e) => uploaded.inc({ region: e.region }, e.bytes)),
    bus.on('copy.failed', (e) => copyFailures.inc({ region: e.region })),
    bus.on('source.skipped', (e) => skipped.inc({ source: e.source })),
    bus.on('storage.request', (e) => requests.inc({ region: e.region, op: e.op, result: e.ok ? 'ok' : 'error' })),
    bus.on('storage.retry', (e) => retries.inc({ region: e.region, op: e.op })),
  ];
  return { registry, detach: () => offs.forEach((off) => off()) };
}
