// The intake against a real kube-apiserver (with etcd and kwok): real bound ServiceAccount tokens from the TokenRequest
// API for signaler pods on their nodes, checked by a real TokenReview, with the worker's rights of deploy/base/rbac.yaml.
// Spot Guard behind the intake is a recorder here (starting the workflows is covered end to end).
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CoreV1Api, KubeConfig, type KubernetesObject, KubernetesObjectApi, loadAllYaml } from '@kubernetes/client-node';
import { KubernetesStack, KWOK_ANNOTATION } from '../scripts/peers/kubernetes-stack.js';
import { until } from '../scripts/peers/wait.js';
import { intakeHandler } from '../worker/intake.js';
import { kubernetesIntakeDeps } from '../worker/intake-kubernetes.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const AUDIENCE = 'spot-guard-intake';
const NAMESPACE = 'spot-guard';
const A = { node: 'intake-node-a', instance: 'i-0aaaaaaaaaaaaaaa1', pod: 'signaler-a' };
const B = { node: 'intake-node-b', instance: 'i-0bbbbbbbbbbbbbbb1', pod: 'signaler-b' };

/** A pod the namespace's restricted Pod Security Standard (deploy/base/rbac.yaml) admits. */
const RESTRICTED_POD = {
  securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
  containers: [{ name: 'signaler', image: 'spot-guard', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
};

describe('intake against a real API server (TokenRequest and TokenReview)', function () {
  this.timeout(120_000);
  let stack: KubernetesStack;
  let core: CoreV1Api;
  let server: Server;
  let url: string;
  const started: string[] = [];

  before(async function () {
    stack = await new KubernetesStack().start();
    core = stack.coreApi();
    const admin = KubernetesObjectApi.makeApiClient(stack.kubeConfig());
    for (const object of loadAllYaml(readFileSync(join(repoRoot, 'deploy', 'base', 'rbac.yaml'), 'utf8')) as KubernetesObject[]) await admin.create(object);
    for (const who of [A, B]) {
      await core.createNode({
        body: {
          metadata: { name: who.node, annotations: { [KWOK_ANNOTATION]: 'fake' } },
          spec: { providerID: `aws:///us-east-1a/${who.instance}` },
          status: { allocatable: { cpu: '4', memory: '16Gi', pods: '110' }, capacity: { cpu: '4', memory: '16Gi', pods: '110' } },
        },
      });
      await core.createNamespacedPod({ namespace: NAMESPACE, body: { metadata: { name: who.pod }, spec: { nodeName: who.node, serviceAccountName: 'spot-guard-signaler', ...RESTRICTED_POD } } });
    }
    const asWorker = await kubeConfigOf('spot-guard-worker', []);
    const deps = kubernetesIntakeDeps(asWorker);
    const handler = intakeHandler(
      {
        ...deps,
        verifyProtected: () => Promise.resolve({ spotAsgName: 'spot-asg' }),
        rebalance: ({ instanceId }) => (started.push(`rebalance ${instanceId}`), Promise.resolve({ workflowId: `spot-guard-rebalance-${instanceId}` })),
        interruption: ({ instanceId }, n) => (started.push(`${n.action} ${instanceId}`), Promise.resolve({ workflowId: `spot-guard-rebalance-${instanceId}` })),
      },
      { audience: AUDIENCE, signalerServiceAccount: `${NAMESPACE}/spot-guard-signaler`, requestsPerNodePerMinute: 30 },
      { info: () => undefined, warn: () => undefined },
    );
    server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async function () {
    server?.closeAllConnections();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await stack?.stop();
  });

  /** A kubeconfig that authenticates as this ServiceAccount of the spot-guard namespace. */
  async function kubeConfigOf(serviceAccount: string, audiences: string[]): Promise<KubeConfig> {
    const token = await tokenFor(serviceAccount, audiences);
    const cluster = stack.kubeConfig().getCurrentCluster();
    assert.ok(cluster);
    const config = new KubeConfig();
    config.loadFromOptions({ clusters: [cluster], users: [{ name: serviceAccount, token }], contexts: [{ name: 'c', cluster: cluster.name, user: serviceAccount }], currentContext: 'c' });
    return config;
  }

  async function tokenFor(serviceAccount: string, audiences: string[], pod?: string): Promise<string> {
    const boundObjectRef = pod ? { kind: 'Pod', apiVersion: 'v1', name: pod, uid: (await core.readNamespacedPod({ namespace: NAMESPACE, name: pod })).metadata?.uid } : undefined;
    const { status } = await core.createNamespacedServiceAccountToken({ name: serviceAccount, namespace: NAMESPACE, body: { spec: { audiences, expirationSeconds: 600, ...(boundObjectRef ? { boundObjectRef } : {}) } } });
    assert.ok(status?.token);
    return status.token;
  }

  const post = (path: string, token: string, body: unknown): Promise<{ status: number; error?: string }> => postRaw(path, token, JSON.stringify(body));

  /**
   * The same token with its expiry an hour ago, signed again with the API server's ServiceAccount key: a real expired
   * token (the TokenRequest API issues none shorter than 10 minutes).
   */
  function expired(token: string): string {
    const [header, payload] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
    const now = Math.floor(Date.now() / 1000);
    const body = Buffer.from(JSON.stringify({ ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 })).toString('base64url');
    const key = readFileSync(join(dirname(stack.kubeconfigPath), 'sa.key'));
    return `${header}.${body}.${sign('RSA-SHA256', Buffer.from(`${header}.${body}`), key).toString('base64url')}`;
  }

  const postRaw = async (path: string, token: string, body: string): Promise<{ status: number; error?: string }> => {
    const response = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
    const answer = (await response.json()) as { error?: string };
    return { status: response.status, ...(answer.error ? { error: answer.error } : {}) };
  };

  it('a signaler pod\'s token reports its own instance; every other claim is refused with the reason', async function () {
    const tokenA = await tokenFor('spot-guard-signaler', [AUDIENCE], A.pod);
    assert.deepEqual(await post('/v1/notices/rebalance', tokenA, { instanceId: A.instance }), { status: 202 });
    assert.deepEqual(await post('/v1/notices/interruption', tokenA, { instanceId: A.instance, action: 'terminate', time: '2026-12-02T10:02:00Z' }), { status: 202 });

    const refusedWith = async (status: number, reason: RegExp, answer: Promise<{ status: number; error?: string }>): Promise<void> => {
      const { status: got, error } = await answer;
      assert.equal(got, status, error);
      assert.match(error ?? '', reason);
    };
    await refusedWith(403, /node intake-node-a is instance i-0aaaaaaaaaaaaaaa1: a signaler may report only its own instance, not i-0bbbbbbbbbbbbbbb1/, post('/v1/notices/rebalance', tokenA, { instanceId: B.instance }));
    await refusedWith(401, /token refused by the Kubernetes API/, post('/v1/notices/rebalance', await tokenFor('spot-guard-signaler', ['https://kubernetes.default.svc.cluster.local'], A.pod), { instanceId: A.instance }));
    await refusedWith(403, /only the signaler's ServiceAccount/, post('/v1/notices/rebalance', await tokenFor('spot-guard-worker', [AUDIENCE]), { instanceId: A.instance }));
    await refusedWith(401, /token refused by the Kubernetes API/, post('/v1/notices/rebalance', `${tokenA.slice(0, -4)}AAAA`, { instanceId: A.instance }));

    await refusedWith(401, /token refused by the Kubernetes API: .*expired/, post('/v1/notices/rebalance', expired(tokenA), { instanceId: A.instance }));
    await refusedWith(400, /is not a JSON object/, postRaw('/v1/notices/rebalance', tokenA, 'instanceId=i-0aaaaaaaaaaaaaaa1'));

    // A token outlives nothing it was bound to: once its pod is gone, it is refused.
    const tokenB = await tokenFor('spot-guard-signaler', [AUDIENCE], B.pod);
    await core.deleteNamespacedPod({ namespace: NAMESPACE, name: B.pod, gracePeriodSeconds: 0 });
    await until('signaler-b gone', async () => (await core.listNamespacedPod({ namespace: NAMESPACE })).items.every((p) => p.metadata?.name !== B.pod), 30_000);
    await refusedWith(401, /token refused by the Kubernetes API/, post('/v1/notices/rebalance', tokenB, { instanceId: B.instance }));

    assert.deepEqual(started, [`rebalance ${A.instance}`, `terminate ${A.instance}`], 'only the two rightful notices acted');
  });
});
