// The cofre command line. `wal-push` first tries the running daemon's socket and `wal-fetch` the recovery's
// fetch agent, loading almost nothing; every other command (and those two without a peer) loads the full program.
import { walFetchViaAgent, walPushViaDaemon } from './wal-client.ts';

if (!(await walPushViaDaemon(process.argv)) && !(await walFetchViaAgent(process.argv))) {
  const { runProgram } = await import('./program.ts');
  await runProgram(process.argv);
}
