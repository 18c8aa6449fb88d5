// Peer processes killed when the process that started them ends without stopping them: on process.exit (mocha's
// --exit after the run, a test that threw before its `after` hook) and on SIGINT or SIGTERM (Ctrl-C in a terminal
// reaches the whole process group, a SIGTERM from CI or `kill` reaches only this process). A peer's own stop() is
// still the way to end it; this is the net under it.
import type { ChildProcess } from 'node:child_process';

/** Each child with what to remove after it (its temporary directory), synchronously. */
const children = new Map<ChildProcess, () => void>();
const signals = ['SIGINT', 'SIGTERM'] as const;

function killAll(): void {
  for (const [child, cleanup] of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    try {
      cleanup();
    } catch {
      // best effort: the process is ending
    }
  }
  children.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  killAll();
  // This listener runs first (prepended): when it is the only one, the process ends by the signal as it would have
  // without it; when someone else listens (the benchmark stops its peers and exits), they decide.
  const alone = process.listenerCount(signal) === 1;
  uninstall();
  if (alone) process.kill(process.pid, signal);
}

function install(): void {
  for (const signal of signals) process.prependListener(signal, onSignal);
  process.on('exit', killAll);
}

function uninstall(): void {
  for (const signal of signals) process.removeListener(signal, onSignal);
  process.removeListener('exit', killAll);
}

/**
 * Kills `child` (and then runs `cleanup`, which must be synchronous) if this process exits or is interrupted while it
 * runs. Returns the function that forgets it (called by itself when the child exits); the listeners are there only
 * while some child is.
 */
export function stopOnExit(child: ChildProcess, cleanup: () => void = () => undefined): () => void {
  if (children.size === 0) install();
  children.set(child, cleanup);
  const forget = (): void => {
    if (!children.delete(child)) return;
    if (children.size === 0) uninstall();
  };
  child.once('exit', forget);
  return forget;
}
