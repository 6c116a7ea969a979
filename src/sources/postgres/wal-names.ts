// WAL file names and where they live in a region: <source>/wal/<timeline>/<name>.
import type { ObjectIdentity } from '../../crypto/index.ts';
import { CofreError } from '../../errors/index.ts';

/** Segment, partial segment, backup history file or timeline history file names, as PostgreSQL writes them. */
export const WAL_NAME = /^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$/;

export function timelineOf(name: string): string {
  return name.slice(0, 8);
}

export function walKey(source: string, name: string): string {
  return `${source}/wal/${timelineOf(name)}/${name}`;
}

export function walIdentity(repo: string, source: string, name: string): ObjectIdentity {
  return { repo, source, backup: 'wal', kind: 'wal', name };
}

export function checkWalName(name: string, op: string): void {
  if (!WAL_NAME.test(name)) {
    throw new CofreError('CONFIG_INVALID', `${JSON.stringify(name)} is not a WAL file name`, {
      op, hint: "archive_command = 'cofre -c /etc/cofre/cofre.yaml wal-push %p', restore_command = '... wal-fetch %f %p'",
    });
  }
}

/** The segment after a full segment `name` of `segmentSize` bytes, on the same timeline; null for other WAL files. */
export function nextSegment(name: string, segmentSize: number): string | null {
  if (!/^[0-9A-F]{24}$/.test(name) || segmentSize <= 0 || (segmentSize & (segmentSize - 1)) !== 0) return null;
  const perLog = 0x100000000 / segmentSize;
  let log = parseInt(name.slice(8, 16), 16);
  let seg = parseInt(name.slice(16, 24), 16) + 1;
  if (seg >= perLog) [log, seg] = [log + 1, 0];
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return `${name.slice(0, 8)}${hex(log)}${hex(seg)}`;
}
