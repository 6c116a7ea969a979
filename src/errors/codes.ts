// The one registry of cofre's error codes: what each means and which exit code the CLI gives it.

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_PROBLEMS_FOUND = 3;
export const EXIT_DATA_ERROR = 65; // EX_DATAERR: stored data failed authentication or checks
export const EXIT_UNAVAILABLE = 69; // EX_UNAVAILABLE: not enough regions reachable
export const EXIT_IO_ERROR = 74; // EX_IOERR: the restore's own target could not be written
export const EXIT_TEMPFAIL = 75; // EX_TEMPFAIL: busy (another run holds the source), try again later
export const EXIT_CONFIG = 78; // EX_CONFIG

export const ERROR_CODES = {
  USAGE: { exit: EXIT_USAGE, retryable: false },
  CONFIG_INVALID: { exit: EXIT_CONFIG, retryable: false },
  CONFIG_NOT_FOUND: { exit: EXIT_CONFIG, retryable: false },
  KEY_FILE_INSECURE: { exit: EXIT_CONFIG, retryable: false },
  KEY_FILE_INVALID: { exit: EXIT_CONFIG, retryable: false },
  KEY_MISMATCH: { exit: EXIT_DATA_ERROR, retryable: false },
  KMS_UNAVAILABLE: { exit: EXIT_UNAVAILABLE, retryable: true },
  AUTHENTICATION_FAILED: { exit: EXIT_DATA_ERROR, retryable: false },
  HASH_MISMATCH: { exit: EXIT_DATA_ERROR, retryable: false },
  OBJECT_NOT_FOUND: { exit: EXIT_DATA_ERROR, retryable: false },
  OBJECT_EXISTS: { exit: EXIT_FAILURE, retryable: false },
  OBJECT_LOCKED: { exit: EXIT_FAILURE, retryable: false },
  STORAGE_UNAVAILABLE: { exit: EXIT_UNAVAILABLE, retryable: true },
  STORAGE_FAILED: { exit: EXIT_FAILURE, retryable: true },
  QUORUM_NOT_MET: { exit: EXIT_UNAVAILABLE, retryable: true },
  REPOSITORY_MISMATCH: { exit: EXIT_CONFIG, retryable: false },
  SOURCE_NOT_FOUND: { exit: EXIT_USAGE, retryable: false },
  SOURCE_UNREADABLE: { exit: EXIT_FAILURE, retryable: false },
  SOURCE_BUSY: { exit: EXIT_TEMPFAIL, retryable: true },
  BACKUP_NOT_FOUND: { exit: EXIT_USAGE, retryable: false },
  PATH_NOT_FOUND: { exit: EXIT_USAGE, retryable: false },
  NO_PARENT: { exit: EXIT_USAGE, retryable: false },
  RESTORE_TARGET_NOT_EMPTY: { exit: EXIT_USAGE, retryable: false },
  UNSAFE_PATH: { exit: EXIT_DATA_ERROR, retryable: false },
  RESTORE_FAILED: { exit: EXIT_DATA_ERROR, retryable: false },
  RESTORE_TARGET_FAILED: { exit: EXIT_IO_ERROR, retryable: false },
  MANIFEST_INVALID: { exit: EXIT_DATA_ERROR, retryable: false },
  CATALOG_FAILED: { exit: EXIT_FAILURE, retryable: false },
  ABORTED: { exit: EXIT_FAILURE, retryable: true },
  INTERNAL: { exit: EXIT_FAILURE, retryable: false },
} as const satisfies Record<string, { exit: number; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function exitCodeFor(code: ErrorCode): number {
  return ERROR_CODES[code].exit;
}
