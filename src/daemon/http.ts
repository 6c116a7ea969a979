// The daemon's HTTP API (express): /health, /ready, /metrics, /api/v1/status, /api/v1/backups. Handlers only
// translate: the logic lives in the daemon's state and the scheduler.
import { timingSafeEqual } from 'node:crypto';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Registry } from 'prom-client';
import type { Secret } from '../config/index.ts';

export interface HttpHandlers {
  health(): { ok: boolean; problems: string[] };
  ready(): Promise<{ ok: boolean; reasons: string[] }>;
  registry(): Registry;
  status(): unknown;
  backups(source?: string): unknown;
  startBackup(source: string, type: string): { ok: true; queued: unknown } | { ok: false; status: number; error: string };
}

function bearer(token: Secret | null) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!token) return next();
    const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer\s+/i, ''));
    const want = Buffer.from(token.reveal());
    if (given.length === want.length && timingSafeEqual(given, want)) return next();
    res.status(401).set('WWW-Authenticate', 'Bearer').json({ error: 'a valid bearer token is required (daemon.tokenFile)' });
  };
}

export function createApp(h: HttpHandlers, token: Secret | null): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '16kb' }));
  // Liveness stays open even when the API needs a token: orchestrators probe it without credentials.
  app.get('/health', (_req, res) => {
    const health = h.health();
    res.status(health.ok ? 200 : 503).json({ status: health.ok ? 'ok' : 'unhealthy', problems: health.problems });
  });
  app.use(bearer(token));
  app.get('/ready', async (_req, res) => {
    const ready = await h.ready();
    res.status(ready.ok ? 200 : 503).json({ ready: ready.ok, reasons: ready.reasons });
  });
  app.get('/metrics', async (_req, res) => {
    const registry = h.registry();
    res.set('Content-Type', registry.contentType).send(await registry.metrics());
  });
  app.get('/api/v1/status', (_req, res) => void res.json(h.status()));
  app.get('/api/v1/backups', (req, res) => void res.json(h.backups(typeof req.query.source === 'string' ? req.query.source : undefined)));
  app.post('/api/v1/backups', (req, res) => {
    const body = (req.body ?? {}) as { source?: unknown; type?: unknown };
    const out = h.startBackup(String(body.source ?? ''), String(body.type ?? 'incr'));
    if (out.ok) res.status(202).json(out.queued);
    else res.status(out.status).json({ error: out.error });
  });
  return app;
}

export function listen(app: express.Express, listenOn: string): Promise<Server> {
  const port = Number(listenOn.slice(listenOn.lastIndexOf(':') + 1));
  const host = listenOn.slice(0, listenOn.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host);
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
}
