// Starts moto_server (S3 + KMS) on a free loopback port; one process stands for one region, stopping it is an outage.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { CreateBucketCommand, S3Client, type BucketLocationConstraint } from '@aws-sdk/client-s3';

/** A fresh object each time: the AWS SDK writes bookkeeping fields into the credentials it is given. */
export function motoCredentials(): { accessKeyId: string; secretAccessKey: string } {
  return { accessKeyId: 'testing', secretAccessKey: 'testing' };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface Moto {
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

async function waitReady(endpoint: string, child: ChildProcess, deadlineMs: number): Promise<void> {
  const started = performance.now();
  while (performance.now() - started < deadlineMs) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}`);
    try {
      const res = await fetch(endpoint + '/');
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`moto_server at ${endpoint} did not become ready`);
}

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}`;
  await waitReady(endpoint, child, 30_000);
  return {
    endpoint,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

export async function createBucket(endpoint: string, region: string, bucket: string, opts: { objectLock?: boolean } = {}): Promise<void> {
  const s3 = new S3Client({ region, endpoint, forcePathStyle: true, credentials: motoCredentials() });
  await s3.send(new CreateBucketCommand({
    Bucket: bucket,
    ...(region === 'us-east-1' ? {} : { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } }),
    ...(opts.objectLock ? { ObjectLockEnabledForBucket: true } : {}),
  }));
  s3.destroy();
}
