// Restarting a worker on the time-skipping test server. A real Temporal server moves the workflow tasks of a worker
// that is gone from its sticky queue to the normal one after the sticky schedule-to-start timeout (10 s). The Java test
// server has no such timeout and ignores ShutdownWorker: every workflow cached by a stopped worker gets its next task
// on that worker's sticky queue, forever, and the pending task locks the server's clock (measured: a 5-minute sleep
// after a restart took over 9 minutes of real time).
//
// So the workers of a restartable harness connect through a byte-for-byte TCP pass-through that notes the sticky queue
// names it sees (`<worker identity>-<32 hex>`, sent in the clear in the worker's polls), and once a worker has stopped,
// a stand-in for the server's timeout polls its sticky queues and fails each workflow task found there with the cause
// RESET_STICKY_TASK_QUEUE: the test server then schedules the task again on the normal queue, where the new worker
// takes it with the full history, as after a real server's sticky timeout. A query task found there is answered as
// failed (the caller asks again once the workflow has moved; see `kick`).
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { NativeConnection } from '@temporalio/worker';
import type { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';

const { temporal } = proto;

const STICKY_NAME = /[A-Za-z0-9._:@-]+-[0-9a-f]{32}/g;

/** A TCP pass-through to the test server that notes every sticky queue name the workers send. */
export class StickyQueueSpy {
  readonly seen = new Set<string>();
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  address = '';

  constructor(private readonly target: string) {}

  async start(): Promise<this> {
    const [host, port] = splitAddress(this.target);
    this.server = createServer((client) => {
      const upstream = tcpConnect(port, host);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      this.sockets.add(client).add(upstream);
      let tail = '';
      client.on('data', (chunk: Buffer) => {
        // Names may straddle two chunks: look at the end of the previous one too.
        const text = tail + chunk.toString('latin1');
        for (const match of text.matchAll(STICKY_NAME)) this.seen.add(match[0]);
        tail = text.slice(-120);
      });
      client.pipe(upstream);
      upstream.pipe(client);
      const close = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.address = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Sticky queue names of the worker with this identity. */
  queuesOf(identity: string): string[] {
    return [...this.seen].filter((name) => name.startsWith(`${identity}-`) && /^[0-9a-f]{32}$/.test(name.slice(identity.length + 1)));
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

function splitAddress(address: string): [string, number] {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at), Number(address.slice(at + 1))];
}

/**
 * Plays the real server's sticky schedule-to-start timeout for the sticky queues of stopped workers: every workflow
 * task found on them is failed (RESET_STICKY_TASK_QUEUE), which sends it to the normal queue.
 */
export class StickyTimeout {
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];
  /** Workflow tasks moved to the normal queue, and queries refused, so far. */
  moved = 0;
  refusedQueries = 0;

  constructor(
    private readonly connection: Connection,
    private readonly namespace: string,
  ) {}

  /** Starts watching these sticky queues (of a worker that has stopped) until `stop`. */
  watch(queues: string[]): void {
    for (const queue of queues) this.loops.push(this.drain(queue));
  }

  private async drain(queue: string): Promise<void> {
    const service = this.connection.workflowService;
    const { namespace } = this;
    const { TaskQueueKind, WorkflowTaskFailedCause, QueryResultType } = temporal.api.enums.v1;
    while (!this.abort.signal.aborted) {
      let task: proto.temporal.api.workflowservice.v1.IPollWorkflowTaskQueueResponse;
      try {
        task = await this.connection.withAbortSignal(this.abort.signal, () =>
          service.pollWorkflowTaskQueue({ namespace, taskQueue: { name: queue, kind: TaskQueueKind.TASK_QUEUE_KIND_STICKY }, identity: 'sticky-timeout' }),
        );
      } catch (error) {
        if (this.abort.signal.aborted) return;
        if (/DEADLINE_EXCEEDED|deadline/i.test(String(error))) continue;
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      if (!task.taskToken || task.taskToken.length === 0) continue;
      try {
        if (task.query) {
          this.refusedQueries++;
          await service.respondQueryTaskCompleted({
            namespace,
            taskToken: task.taskToken,
            completedType: QueryResultType.QUERY_RESULT_TYPE_FAILED,
            errorMessage: 'sticky worker gone (test: StickyTimeout)',
          });
        } else {
          this.moved++;
          await service.respondWorkflowTaskFailed({
            namespace,
            taskToken: task.taskToken,
            cause: WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE,
            identity: 'sticky-timeout',
          });
        }
      } catch {
        // The task was outdated (the workflow moved on or closed): nothing to do.
      }
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
  }
}

/** A native connection for workers, through the spy; uncompressed, so that the spy can read the queue names. */
export function connectThrough(spy: StickyQueueSpy): Promise<NativeConnection> {
  return NativeConnection.connect({ address: spy.address, grpcCompression: { codec: 'none' } });
}
