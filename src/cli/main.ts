// The cofre command line. `wal-push` first tries the running daemon's socket, loading almost nothing; every
// other command (and wal-push without a daemon) loads the full program.
import { walPushViaDaemon } from './wal-client.ts';

if (!(await walPushViaDaemon(process.argv))) {
  const { runProgram } = await import('./program.ts');
  await runProgram(process.argv);
}
