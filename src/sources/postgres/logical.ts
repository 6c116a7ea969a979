// Logical backups of a PostgreSQL cluster: pg_dumpall --globals-only, then per database pg_dump --format=custom
// streamed straight into the pipeline, with table fingerprints taken in the same exported snapshot.
import type { Readable } from 'node:stream';
import pg from 'pg';
import type { PostgresSourceConfig } from '../../config/index.ts';
import { CofreError } from '../../errors/index.ts';
import type { Manifest } from '../../repository/index.ts';
import type { SourceCapture, SourceCaptureInput } from '../capture.ts';
import { runProgram } from './child.ts';
import { tableFingerprints } from './fingerprint.ts';
import { binary, clientConfig, libpqEnv, parseConnUrl, type Conn } from './libpq.ts';

export const GLOBALS_OBJECT = 'globals.sql';

export function dumpObjectName(index: number): string {
  return `db-${String(index).padStart(4, '0')}.dump`;
}

async function databasesToDump(conn: Conn, configured: string[]): Promise<{ names: string[]; serverVersion: string }> {
  const client = new pg.Client(clientConfig(conn));
  try {
    await client.connect();
    const version = (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
    const all = (await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname')).rows.map((r) => r.datname);
    const missing = configured.filter((d) => !all.includes(d));
    if (missing.length > 0) {
      throw new CofreError('SOURCE_UNREADABLE', `database(s) ${missing.join(', ')} not found on the server`, { op: 'backup', hint: `it has: ${all.join(', ')}` });
    }
    return { names: configured.length > 0 ? configured : all, serverVersion: version };
  } catch (err) {
    if (err instanceof CofreError) throw err;
    throw new CofreError('SOURCE_UNREADABLE', `cannot connect to PostgreSQL at ${conn.host}:${conn.port} as ${conn.user}: ${(err as Error).message}`, {
      op: 'backup', cause: err, hint: 'check sources.<name>.url and that the server accepts the connection (pg_hba.conf)',
    });
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function dumpWith(input: SourceCaptureInput, name: string, program: ReturnType<typeof runProgram>) {
  const [stored] = await Promise.all([input.write(name, program.child.stdout as Readable), program.done]);
  return stored;
}

export async function captureLogical(src: PostgresSourceConfig, input: SourceCaptureInput): Promise<SourceCapture> {
  const conn = parseConnUrl(src.url, 'backup');
  const { names, serverVersion } = await databasesToDump(conn, src.databases);
  const objects = [];
  const hint = 'check the connection, the role\'s privileges (a superuser or pg_read_all_data), and that the client tools match the server\'s major version';
  objects.push(await dumpWith(input, GLOBALS_OBJECT, runProgram(binary(src.binDir, 'pg_dumpall'), ['--globals-only'], libpqEnv(conn), 'read', hint)));
  const databases: NonNullable<Manifest['logical']>['databases'] = [];
  for (const [index, database] of names.entries()) {
    if (input.signal?.aborted) throw new CofreError('ABORTED', 'backup aborted', { op: 'backup' });
    // A held transaction exports its snapshot: pg_dump and the fingerprints then see exactly the same data.
    const client = new pg.Client(clientConfig(conn, database));
    await client.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const snapshot = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
      const fingerprints = await tableFingerprints(client, 'h64');
      const name = dumpObjectName(index);
      // --compress=0: cofre compresses with zstd once; pg_dump's own gzip would only cost CPU.
      objects.push(await dumpWith(input, name, runProgram(binary(src.binDir, 'pg_dump'), ['--format=custom', '--compress=0', `--snapshot=${snapshot}`, '--no-password'], libpqEnv(conn, database), 'read', hint)));
      databases.push({ name: database, object: name, fingerprints });
      await client.query('COMMIT');
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  const bytes = objects.reduce((n, o) => n + o.plainBytes, 0);
  return {
    method: 'logical', objects,
    stats: { files: databases.length, dirs: 0, symlinks: 0, bytes, newBytes: bytes, newFiles: databases.length },
    logical: { serverVersion, globals: GLOBALS_OBJECT, databases },
  };
}
