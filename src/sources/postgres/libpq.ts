// How cofre talks to a PostgreSQL server: a pg client config and a libpq environment for pg_dump & co. The
// password travels in PGPASSWORD of the child's environment — never on a command line, never in a log.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { ClientConfig } from 'pg';
import type { Secret } from '../../config/index.ts';
import { CofreError } from '../../errors/index.ts';

export interface Conn {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  sslmode?: string;
}

export function parseConnUrl(url: Secret | string, op: string): Conn {
  const text = typeof url === 'string' ? url : url.reveal();
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new CofreError('CONFIG_INVALID', 'the PostgreSQL connection is not a URL (postgres://user:password@host:port/database)', { op });
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new CofreError('CONFIG_INVALID', `the PostgreSQL connection URL must start with postgres:// (got ${u.protocol}//)`, { op });
  }
  return {
    host: decodeURIComponent(u.hostname) || (u.searchParams.get('host') ?? 'localhost'),
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username) || 'postgres',
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres',
    ...(u.searchParams.get('sslmode') ? { sslmode: u.searchParams.get('sslmode')! } : {}),
  };
}

export function clientConfig(conn: Conn, database = conn.database): ClientConfig {
  return { host: conn.host, port: conn.port, user: conn.user, password: conn.password, database, application_name: 'cofre' };
}

/** The environment for a libpq program (pg_dump, pg_restore, psql) connecting to `database`. */
export function libpqEnv(conn: Conn, database = conn.database): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: conn.host, PGPORT: String(conn.port), PGUSER: conn.user, PGDATABASE: database, PGAPPNAME: 'cofre' };
  delete env.PGPASSWORD;
  delete env.PGSERVICE;
  if (conn.password) env.PGPASSWORD = conn.password;
  if (conn.sslmode) env.PGSSLMODE = conn.sslmode;
  return env;
}

export function binary(binDir: string | undefined, name: string): string {
  let dir = binDir;
  if (!dir) {
    try {
      dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    } catch {
      throw new CofreError('CONFIG_INVALID', `cannot find ${name}: pg_config is not on PATH`, {
        op: 'postgres.binaries', hint: 'install the PostgreSQL client tools of the server\'s major version, or set sources.<name>.binDir',
      });
    }
  }
  return join(dir, name);
}
