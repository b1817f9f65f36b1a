// One run of a container's init process: its output pumped into the container's log file
// (ReadStdout/ReadStderr loops) while WaitProcess blocks; and the restart policy's decisions.
import type { AgentClient } from '../../agent/agent-client.js';
import type { ContainerLog } from './container-log.js';
import type { OutputStream, OutputTap } from './output-tap.js';

export type RestartPolicy = 'Never' | 'OnFailure' | 'Always';

/** Restart a container that exited with `exitCode`? Never restarts the VM. Pure. */
export function shouldRestart(policy: RestartPolicy | undefined, exitCode: number): boolean {
  return policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
}

/** Delay before restart n+1: 1 s doubling, capped at 5 min (the kubelet's CrashLoopBackOff shape). Pure. */
export function restartBackoffMs(restartCount: number, baseMs = 1_000, maxMs = 300_000): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(restartCount, 20));
}

/** The message of a container that failed, with its last output lines. Pure. */
export function containerFailedMessage(name: string, exitCode: number, lines: string[]): string {
  const tail = lines.length ? `; last output:\n${lines.join('\n')}` : '';
  return `container ${name} exited with code ${exitCode}${tail}`;
}

const READ_CHUNK = 64 * 1024;

/**
 * Copies one stream to the log until its end: the agent's end-of-stream status (Kata 1.x's
 * Unknown "EOF"), which AgentClient returns as an empty read. Any other failure rejects.
 */
async function pump(
  read: (len: number) => Promise<Buffer>,
  log: ContainerLog,
  stream: OutputStream,
  tap: OutputTap | undefined,
): Promise<void> {
  for (;;) {
    const data = await read(READ_CHUNK);
    if (data.length === 0) return;
    await Promise.all([log.write(data, stream), tap?.publish(stream, data)]);
  }
}

/**
 * Copies the container's init process's (exec id = container id) stdout and stderr to `log`
 * (and offers them to `tap`, for attach) until both end, then resolves to its exit status (128+N when killed by signal N). Output first:
 * Kata 1.x's agent closes a process's pipes when WaitProcess returns, so whatever was still
 * unread then is lost, and its runtime read both streams to their end before waiting. The end
 * comes with the init's exit: the container's pid namespace, and every writer in it, dies too.
 */
export async function watchContainerRun(
  client: AgentClient,
  id: string,
  log: ContainerLog,
  signal: AbortSignal,
  tap?: OutputTap,
): Promise<number> {
  const opts = { signal };
  const out = pump((len) => client.readStdout(id, id, len, opts), log, 'stdout', tap).catch(
    () => {},
  );
  const err = pump((len) => client.readStderr(id, id, len, opts), log, 'stderr', tap).catch(
    () => {},
  );
  await Promise.all([out, err]);
  tap?.end();
  signal.throwIfAborted();
  const status = await client.waitProcess(id, id, opts);
  await log.flush();
  return status;
}
