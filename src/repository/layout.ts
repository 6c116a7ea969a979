// Where things live inside a region (identical in every region) and how backup ids are formed.
import { randomBytes } from 'node:crypto';

export const REPO_FILE_KEY = 'cofre.repo';
export const REPO_FORMAT_VERSION = 1;
export const MANIFEST_NAME = 'manifest';

export type BackupType = 'full' | 'diff' | 'incr';

export function backupPrefix(source: string, backupId: string): string {
  return `${source}/backups/${backupId}/`;
}

/** The parts of a key under <source>/backups/<id>/ (see backupPrefix), or null for any other key. */
export function parseBackupKey(key: string): { source: string; backupId: string; name: string } | null {
  const m = /^([^/]+)\/backups\/([^/]+)\/(.+)$/.exec(key);
  return m ? { source: m[1]!, backupId: m[2]!, name: m[3]! } : null;
}

export function packName(index: number): string {
  return `${String(index).padStart(5, '0')}.pack`;
}

export function objectKey(source: string, backupId: string, name: string): string {
  return `${backupPrefix(source, backupId)}${name}`;
}

/** A legal hold's marker, so a rebuilt catalog knows the hold: <source>/holds/<backup id>. */
export function holdKey(source: string, backupId: string): string {
  return `${source}/holds/${backupId}`;
}

export function manifestKey(source: string, backupId: string): string {
  return objectKey(source, backupId, MANIFEST_NAME);
}

/** Ids sort by time: 20261127T010000Z-full-7f3a. */
export function backupIdFor(startedAt: Date, type: BackupType): string {
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  return `${stamp}-${type}-${randomBytes(2).toString('hex')}`;
}

export const BACKUP_ID_PATTERN = /^\d{8}T\d{6}Z-(full|diff|incr)-[0-9a-f]{4}$/;
