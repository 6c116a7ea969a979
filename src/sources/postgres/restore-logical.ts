// Restores a logical backup into a server: roles and tablespaces first (psql), then each database (pg_restore),
// every dump streamed from the regions straight into the client program.
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import type { PostgresSourceConfig } from '../../config/index.ts';
import { CofreError } from '../../errors/index.ts';
import type { Manifest } from '../../repository/index.ts';
import { runProgram } from './child.ts';
import { binary, clientConfig, libpqEnv, parseConnUrl } from './libpq.ts';

/** Reads one object of the backup (falling back across regions) into consume. */
export type ObjectReader = (name: string, consume: (plaintext: Readable) => Promise<void>) => Promise<void>;

export interface LogicalRestoreResult {
  databases: string[];
  globalsWarnings: number;
}

/** Relations (tables, views, sequences...) a database holds outside the system schemas: a fresh database has none. */
const USER_RELATIONS = `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`;

/**
 * The databases of the backup that exist on the target and hold relations of their own. Restoring into one means
 * pg_restore --clean: its objects dropped and re-created from the backup, whatever was written since. A fresh
 * server's `postgres` database (which every backup holds) has none and is restored into as before.
 */
async function databasesWithData(conn: ReturnType<typeof parseConnUrl>, names: string[]): Promise<{ name: string; relations: number }[]> {
  const found: { name: string; relations: number }[] = [];
  for (const name of names) {
    const client = new pg.Client(clientConfig({ ...conn, database: name }));
    try {
      await client.connect();
      const relations = (await client.query<{ n: number }>(USER_RELATIONS)).rows[0]!.n;
      if (relations > 0) found.push({ name, relations });
    } catch (err) {
      throw new CofreError('RESTORE_FAILED', `cannot look into database ${name} on the restore target ${conn.host}:${conn.port}: ${(err as Error).message}`, {
        op: 'restore', hint: 'it exists there: connect as a user that may read it, drop it, or restore into another server; nothing was changed',
      });
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return found;
}

export async function restoreLogical(
  src: Pick<PostgresSourceConfig, 'binDir'>, manifest: Manifest, target: string, read: ObjectReader, opts: { replaceExisting?: boolean } = {},
): Promise<LogicalRestoreResult> {
  const logical = manifest.logical;
  if (!logical) throw new CofreError('MANIFEST_INVALID', `${manifest.backupId} is not a logical backup`, { op: 'restore' });
  const conn = parseConnUrl(target, 'restore');
  const existing = new Set<string>();
  const client = new pg.Client(clientConfig(conn));
  try {
    await client.connect();
    for (const r of (await client.query<{ datname: string }>('SELECT datname FROM pg_database')).rows) existing.add(r.datname);
  } catch (err) {
    throw new CofreError('RESTORE_FAILED', `cannot connect to the restore target ${conn.host}:${conn.port}: ${(err as Error).message}`, {
      op: 'restore', hint: 'pass --target postgres://user@host:port/postgres of a server you may create roles and databases on',
    });
  } finally {
    await client.end().catch(() => undefined);
  }

  // A mistyped --target (production's URL for a scratch server's) must change nothing: checked before the roles.
  if (!opts.replaceExisting) {
    const occupied = await databasesWithData(conn, logical.databases.map((d) => d.name).filter((n) => existing.has(n)));
    if (occupied.length > 0) {
      throw new CofreError('RESTORE_TARGET_NOT_EMPTY', `${conn.host}:${conn.port} already has ${occupied.map((d) => `database ${d.name} (${d.relations} relations)`).join(', ')}: restoring would drop and re-create their objects from the backup`, {
        op: 'restore', hint: 'restore into another server or a new cluster, drop those databases first, or pass --replace-existing to replace their objects with the backup\'s; nothing was changed',
      });
    }
  }

  // Roles first: objects in the dumps name their owners. Roles that already exist (postgres) only warn.
  let globalsWarnings = 0;
  await read(logical.globals, async (plaintext) => {
    const psql = runProgram(binary(src.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=0', '--no-password'], libpqEnv(conn), 'write', 'check the target connection and privileges');
    psql.child.stderr!.on('data', (d: Buffer) => (globalsWarnings += (d.toString().match(/ERROR/g) ?? []).length));
    await Promise.all([pipeline(plaintext, psql.child.stdin!), psql.done]);
  });

  for (const db of logical.databases) {
    const into = existing.has(db.name)
      ? ['--clean', '--if-exists', `--dbname=${db.name}`]
      : ['--create', `--dbname=${conn.database}`];
    await read(db.object, async (plaintext) => {
      const restore = runProgram(binary(src.binDir, 'pg_restore'), ['--exit-on-error', '--no-password', ...into], libpqEnv(conn), 'write',
        `restoring database ${db.name} failed; the target may hold a partial copy of it — drop it before retrying`);
      await Promise.all([pipeline(plaintext, restore.child.stdin!), restore.done]);
    });
  }
  return { databases: logical.databases.map((d) => d.name), globalsWarnings };
}
