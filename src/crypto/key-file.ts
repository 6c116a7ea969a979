// The local key file: 32 random bytes, base64, created 0600 on first use and refused if others can read it.
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { CofreError } from '../errors/index.ts';

export const KEY_BYTES = 32;

export interface LocalKey {
  /** A public name derived from the key (an HMAC, not the key): it says which key wrote an object. */
  id: string;
  material: Buffer;
  file: string;
}

/** The public id of a key: HMAC-SHA256 of a fixed label, so it reveals nothing about the key. */
export function keyIdOf(material: Buffer): string {
  return 'local-' + createHmac('sha256', material).update('cofre key id v1').digest('hex').slice(0, 16);
}

/**
 * Writes a new key under `file`, whole or not at all: the key goes to a private temporary file first, which is then
 * hard-linked to its name. link() never replaces a file, so a key that already exists is kept (EEXIST), and a process
 * starting at the same moment (PostgreSQL's archive_command beside a backup) never reads a key half written.
 */
export function createKeyFile(file: string): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.new`;
  const fd = openSync(temporary, 'wx', 0o600);
  try {
    try {
      writeSync(fd, randomBytes(KEY_BYTES).toString('base64') + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(temporary, 0o600);
    linkSync(temporary, file);
  } finally {
    rmSync(temporary, { force: true });
  }
  syncDirectory(dir);
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function loadKeyFile(file: string, opts: { create: boolean }): LocalKey {
  if (!existsSync(file)) {
    if (!opts.create) {
      throw new CofreError('KEY_FILE_INVALID', `key file ${file} does not exist`, {
        op: 'key.load', path: file,
        hint: 'restore the key file from your key escrow; without it the backups it wrote cannot be decrypted (cofre makes a new key only for a new repository)',
      });
    }
    try {
      createKeyFile(file);
    } catch (err) {
      // Another process created it first, whole: use that one.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw new CofreError('KEY_FILE_INSECURE', `key file ${file} has mode ${mode.toString(8).padStart(4, '0')}: group or others can read it`, {
      op: 'key.load', path: file, hint: `run: chmod 600 ${file}`,
    });
  }
  const material = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (material.length !== KEY_BYTES) {
    throw new CofreError('KEY_FILE_INVALID', `key file ${file} does not hold a base64 ${KEY_BYTES}-byte key`, {
      op: 'key.load', path: file, hint: 'point encryption.keyFile at the key cofre created; never edit it by hand',
    });
  }
  return { id: keyIdOf(material), material, file };
}
