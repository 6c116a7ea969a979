// The one error class: a registered code, the operation, the path involved and a hint on what to do next.
import { ERROR_CODES, type ErrorCode } from './codes.ts';

export interface CofreErrorInit {
  op: string;
  path?: string;
  hint?: string;
  retryable?: boolean;
  cause?: unknown;
}

export class CofreError extends Error {
  readonly code: ErrorCode;
  readonly op: string;
  readonly path: string | undefined;
  readonly hint: string | undefined;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, init: CofreErrorInit) {
    super(message, { cause: init.cause });
    this.name = 'CofreError';
    this.code = code;
    this.op = init.op;
    this.path = init.path;
    this.hint = init.hint;
    this.retryable = init.retryable ?? ERROR_CODES[code].retryable;
  }

  /** One line for humans: what failed, where, and what to do next. */
  describe(): string {
    const where = this.path ? ` (${this.path})` : '';
    const hint = this.hint ? `\n  hint: ${this.hint}` : '';
    return `${this.code}: ${this.message}${where}${hint}`;
  }
}

export function isCofreError(err: unknown, code?: ErrorCode): err is CofreError {
  return err instanceof CofreError && (code === undefined || err.code === code);
}

export function messageOf(err: unknown): string {
  if (err instanceof CofreError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}
