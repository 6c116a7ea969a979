// Polling helpers for tests that watch another process (a daemon, a server) reach a state.

/** Calls fn every 100 ms until it returns something other than undefined (errors count as "not yet"). */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, context: () => string = () => ''): Promise<T> {
  const start = performance.now();
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}\n${context().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
