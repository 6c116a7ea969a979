// The pipeline settings a job context implies (re-exported for test helpers).
export { writeSettings as writeContextSettings } from '../../src/jobs/context.ts';
