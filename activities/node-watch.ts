// The worker's view of which node belongs to which instance and whether it is Ready, kept up to date by one watch on
// the API server's nodes (list once, then changes), as controllers do with an informer. Before, a wave listed all nodes
// every second while replacements were awaited: at 1,000 nodes each list was megabytes to receive, decompress and
// deserialize, the largest single cost in the worker; with the watch kube-apiserver's CPU in a wave fell by a third.
import { type CoreV1Api, type KubeConfig, makeInformer, type V1Node } from '@kubernetes/client-node';
import type { NodeLook } from '../workflows/shared/activity-types.js';
import { instanceIdFromProviderId, isNodeReady } from './kubernetes.js';

export interface NodeWatch {
  /** Node and readiness by instance id while the watch is in sync; undefined while it (re)starts or after a failure. */
  current(): ReadonlyMap<string, NodeLook> | undefined;
  stop(): Promise<void>;
}

export interface NodeWatchOptions {
  /** Pause before the watch starts again after the API server refused or broke it. */
  restartDelayMs?: number;
  /** Told about each failure of the watch (the index answers undefined until it is in sync again). */
  onProblem?: (message: string) => void;
}

/**
 * Starts on first use, so a worker that never waits for a replacement never lists the cluster's nodes. Until the first
 * list is in, and after a failure until the watch is back, current() answers undefined and callers read on their own.
 */
export function watchNodes(kubeConfig: KubeConfig, core: Pick<CoreV1Api, 'listNode'>, options: NodeWatchOptions = {}): NodeWatch {
  const restartDelayMs = options.restartDelayMs ?? 5_000;
  const byInstance = new Map<string, NodeLook>();
  /** The instance each node was last seen with: a node deleted or renamed away leaves the index. */
  const instanceOfNode = new Map<string, string>();
  // The first list from the API server's watch cache, as informers do; the watch then goes on from its version.
  const informer = makeInformer<V1Node>(kubeConfig, '/api/v1/nodes', () => core.listNode({ resourceVersion: '0' }));
  let state: 'idle' | 'starting' | 'in-sync' | 'broken' | 'stopped' = 'idle';
  let restartTimer: NodeJS.Timeout | undefined;

  function put(node: V1Node): void {
    const nodeName = node.metadata?.name;
    if (!nodeName) return;
    const instanceId = instanceIdFromProviderId(node.spec?.providerID);
    const before = instanceOfNode.get(nodeName);
    if (before !== undefined && before !== instanceId) byInstance.delete(before);
    if (instanceId === undefined) {
      instanceOfNode.delete(nodeName);
      return;
    }
    instanceOfNode.set(nodeName, instanceId);
    byInstance.set(instanceId, { nodeName, ready: isNodeReady(node) });
  }

  function remove(node: V1Node): void {
    const nodeName = node.metadata?.name;
    if (!nodeName) return;
    const instanceId = instanceOfNode.get(nodeName);
    instanceOfNode.delete(nodeName);
    if (instanceId !== undefined && byInstance.get(instanceId)?.nodeName === nodeName) byInstance.delete(instanceId);
  }

  informer.on('add', put);
  informer.on('update', put);
  informer.on('delete', remove);
  // The informer stops after a failure (a refused list, a broken watch other than "too old"): start it again later.
  informer.on('error', (error: unknown) => restartLater(`node watch failed, reading nodes directly until it is back: ${messageOf(error)}`));

  function start(): void {
    state = 'starting';
    informer.start().then(
      () => {
        // A failed list reports through 'error' and start() still resolves: only a clean start is in sync.
        if (state === 'starting') state = 'in-sync';
      },
      (error: unknown) => restartLater(`node watch could not start: ${messageOf(error)}`),
    );
  }

  function restartLater(message: string): void {
    if (state === 'stopped') return;
    state = 'broken';
    options.onProblem?.(message);
    restartTimer = setTimeout(start, restartDelayMs);
    restartTimer.unref();
  }

  return {
    current() {
      if (state === 'idle') start();
      return state === 'in-sync' ? byInstance : undefined;
    },
    async stop() {
      state = 'stopped';
      clearTimeout(restartTimer);
      await informer.stop();
    },
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
