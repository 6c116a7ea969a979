// JSON logs (pino) to stderr; secret-looking fields are redacted whatever the caller passes.
import pino, { type Logger } from 'pino';
import type { EventBus, EventName } from './events.ts';

export type { Logger };

const REDACT_PATHS = [
  '*.secretAccessKey', '*.accessKeyId', '*.sessionToken', '*.password', '*.token', '*.key', 'secretAccessKey',
  'password', 'token',
];

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, base: { app: 'cofre' }, redact: { paths: REDACT_PATHS, censor: '**redacted**' } }, destination as pino.DestinationStream);
}

const QUIET_EVENTS = new Set<EventName>(['storage.request', 'copy.written', 'restore.progress', 'verify.progress']);
const WARN_EVENTS = new Set<EventName>(['copy.failed', 'restore.fallback', 'storage.retry', 'run.interrupted', 'source.skipped', 'keys.unreachable', 'rpo.breached', 'config.rejected']);
const ERROR_EVENTS = new Set<EventName>(['backup.failed', 'wal.conflict', 'region.lost']);

/** Logs every event at a level that fits it: failures warn, chatter is debug. */
export function logEvents(bus: EventBus, logger: Logger): () => void {
  return bus.onAny((name, payload) => {
    if (QUIET_EVENTS.has(name)) logger.debug({ event: name, ...payload }, name);
    else if (ERROR_EVENTS.has(name)) logger.error({ event: name, ...payload }, name);
    else if (WARN_EVENTS.has(name)) logger.warn({ event: name, ...payload }, name);
    else logger.info({ event: name, ...payload }, name);
  });
}
