// Connection reuse for the Kubernetes client. @kubernetes/client-node 2.x builds a new undici Agent for every request
// it authenticates, so every call opened its own TCP connection and did a full TLS handshake. In a wave of 500 nodes
// that was thousands of handshakes, about a tenth of the worker's CPU in a profile.
import { createHash } from 'node:crypto';
import type { AgentOptions } from 'node:https';
import type { Cluster, KubeConfig } from '@kubernetes/client-node';

/** The private factory client-node calls per request (config.ts, 2.x); its options are public as createDispatcherOptions. */
interface DispatcherFactory {
  createDispatcher(cluster: Cluster | null, agentOptions: AgentOptions): Dispatcher | undefined;
}
interface Dispatcher {
  close(): Promise<void>;
}

export interface ConnectionReuse {
  /** Dispatchers built so far: one per distinct endpoint and TLS material (a rotated certificate makes a new one). */
  readonly dispatchersCreated: number;
}

/**
 * Makes `config` reuse one dispatcher (a keep-alive connection pool) for as long as the endpoint and its TLS material
 * stay the same. Requests made through clients created from `config` before or after this call share it.
 */
export function reuseConnections(config: KubeConfig): ConnectionReuse {
  const factory = config as unknown as DispatcherFactory;
  if (typeof factory.createDispatcher !== 'function') {
    throw new Error('@kubernetes/client-node no longer has KubeConfig.createDispatcher: check worker/kubernetes-connections.ts against its new version');
  }
  const create = factory.createDispatcher.bind(config);
  let current: { key: string; dispatcher: Dispatcher | undefined } | undefined;
  let created = 0;
  factory.createDispatcher = (cluster, agentOptions) => {
    const key = fingerprint(config.createDispatcherOptions(cluster, agentOptions));
    if (current?.key === key) return current.dispatcher;
    const previous = current?.dispatcher;
    current = { key, dispatcher: create(cluster, agentOptions) };
    created++;
    // Requests still on the old pool finish first; only then are its connections closed.
    void previous?.close().catch(() => undefined);
    return current.dispatcher;
  };
  return {
    get dispatchersCreated() {
      return created;
    },
  };
}

/** A digest of the options (certificates and keys included) that never holds the key material itself. */
function fingerprint(options: unknown): string {
  const hash = createHash('sha256');
  hash.update(
    JSON.stringify(options, (_name, value: unknown) => {
      if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer') {
        return createHash('sha256').update(Buffer.from((value as { data: number[] }).data)).digest('hex');
      }
      return value;
    }),
  );
  return hash.digest('hex');
}
