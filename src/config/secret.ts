// Secrets as a type that never prints itself: logs, JSON and inspection all show **redacted**.
import { inspect } from 'node:util';

export const REDACTED = '**redacted**';

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
