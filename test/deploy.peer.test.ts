// deploy/ on a real control plane (etcd, kube-apiserver, kube-controller-manager with the workload controllers,
// kube-scheduler, kwok nodes): the kustomize base and the example overlay, each applied with the pinned kubectl as a
// server-side dry run and then for real; the signaler's DaemonSet pods bound by the scheduler to every spot-labelled
// node and no other (tainted and cordoned spot nodes too); the worker's Deployment scheduled; the settings the
// manifests give both processes accepted by their own validation; and what each ServiceAccount may do, asked of the
// API server's authorizer with SubjectAccessReviews.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, AuthorizationV1Api, type CoreV1Api, type KubernetesObject, loadAllYaml, type V1Node, type V1Pod, type V1PolicyRule } from '@kubernetes/client-node';
import { KubernetesStack, KWOK_ANNOTATION } from '../scripts/peers/kubernetes-stack.js';
import { kubectlPath } from '../scripts/peers/peers.js';
import { until as waitUntil } from '../scripts/peers/wait.js';
import { loadSignalerConfig } from '../signaler/config.js';
import { loadConfig } from '../worker/config.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const BASE = join(repoRoot, 'deploy', 'base');
const OVERLAY = join(repoRoot, 'deploy', 'overlays', 'example');
const NAMESPACE = 'spot-guard';

/** The test cluster's nodes: spot ones with each common label (some tainted and cordoned as Spot Guard drains them), on-demand ones. */
const NODES: { name: string; labels: Record<string, string>; taints?: { key: string; value: string; effect: string }[]; cordoned?: boolean }[] = [
  { name: 'spot-eks', labels: { 'eks.amazonaws.com/capacityType': 'SPOT' } },
  // Being drained: Spot Guard's taint, cordoned, and another tool's NoExecute taint.
  {
    name: 'spot-karpenter',
    labels: { 'karpenter.sh/capacity-type': 'spot' },
    taints: [{ key: 'spot-instance-terminating', value: 'true', effect: 'NoSchedule' }, { key: 'aws-node-termination-handler/spot-itn', value: 'x', effect: 'NoExecute' }],
    cordoned: true,
  },
  { name: 'spot-lifecycle', labels: { 'node.kubernetes.io/lifecycle': 'spot' } },
  // Only the example overlay's own term names it.
  { name: 'spot-example-label', labels: { 'example.com/capacity': 'spot' } },
  { name: 'on-demand-eks', labels: { 'eks.amazonaws.com/capacityType': 'ON_DEMAND' } },
  { name: 'on-demand-karpenter', labels: { 'karpenter.sh/capacity-type': 'on-demand' } },
  { name: 'on-demand-plain', labels: {} },
];
const BASE_SPOT_NODES = ['spot-eks', 'spot-karpenter', 'spot-lifecycle'];
const OVERLAY_SPOT_NODES = [...BASE_SPOT_NODES, 'spot-example-label'];

/** A right: `verb group/resource[/subresource]`, in `namespace` ('' for cluster-wide or a cluster-scoped resource). */
interface Right {
  group: string;
  resource: string;
  subresource?: string;
}

/** What the worker's activities and its intake need (docs/operations.md#permissions); everything else refused. */
function workerMayDo(right: Right, verb: string, namespace: string): boolean {
  const name = `${right.group}/${right.resource}${right.subresource ? `/${right.subresource}` : ''}`;
  switch (name) {
    case '/nodes': // verify a node, watch replacements turn Ready, taint/cordon/untaint (patch)
      return ['get', 'list', 'watch', 'patch'].includes(verb);
    case '/pods': // drain: the pods on a node, in every namespace; the intake: a signaler's pod, in its namespace only
      return verb === 'list' || (verb === 'get' && namespace === NAMESPACE);
    case '/pods/eviction': // the Eviction API, so PodDisruptionBudgets hold
      return verb === 'create';
    case 'policy/poddisruptionbudgets': // scale-down safety
      return verb === 'list';
    case 'authentication.k8s.io/tokenreviews': // the intake: whose token a signaler presents
      return verb === 'create';
    case '/events': // announce each step on the node: Events in `default`, where node Events live; create only
      return verb === 'create' && namespace === 'default';
    default:
      return false;
  }
}

/** The rights asked about: the worker's own, and the ones a compromised worker or signaler would want. */
const RIGHTS: Right[] = [
  'nodes', 'nodes/status', 'nodes/proxy', 'pods', 'pods/eviction', 'pods/exec', 'pods/log', 'pods/status', 'secrets', 'configmaps',
  'serviceaccounts', 'serviceaccounts/token', 'namespaces', 'events', 'policy:poddisruptionbudgets', 'authentication.k8s.io:tokenreviews',
  'authorization.k8s.io:subjectaccessreviews', 'apps:deployments', 'apps:daemonsets', 'coordination.k8s.io:leases',
  'rbac.authorization.k8s.io:clusterroles',
].map((text) => {
  // [group:]resource[/subresource]; no group: the core API group.
  const [group, path] = text.includes(':') ? text.split(':') : ['', text];
  const [resource, subresource] = path.split('/');
  return { group, resource, ...(subresource ? { subresource } : {}) };
});
const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];
const NAMESPACES = [NAMESPACE, 'default', ''];

describe('deploy/: the kustomize base and the example overlay on a real API server, scheduler and kwok nodes', function () {
  this.timeout(300_000);
  let stack: KubernetesStack;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  const until = (what: string, predicate: () => Promise<boolean>, timeoutMs = 90_000) => waitUntil(what, predicate, timeoutMs, () => stack.logs());
  /** The pinned kubectl's output; its warnings (stderr of a command that succeeded) in `warnings`. */
  const kubectl = (...args: string[]): string => kubectlWithWarnings(args).stdout;
  const kubectlWithWarnings = (args: string[], input?: string): { stdout: string; warnings: string } => {
    const run = spawnSync(kubectlPath(), ['--kubeconfig', stack.kubeconfigPath, ...args], { encoding: 'utf8', input });
    if (run.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${run.status ?? run.signal}): ${run.stderr || run.stdout || run.error?.message}`);
    return { stdout: run.stdout, warnings: run.stderr };
  };

  before(async function () {
    stack = await new KubernetesStack({ workloads: true }).start();
    core = stack.coreApi();
    apps = stack.kubeConfig().makeApiClient(AppsV1Api);
    for (const node of NODES) await core.createNode({ body: kwokNode(node) });
    await until('every node Ready', async () => (await core.listNode()).items.filter(isReady).length === NODES.length);
  });

  after(async function () {
    await stack?.stop();
  });

  /** Every object kustomize renders from `dir`, as `Kind/name`. */
  const rendered = (dir: string): string[] =>
    (loadAllYaml(kubectl('kustomize', dir)) as KubernetesObject[]).map((object) => `${object.kind}/${object.metadata?.name}`);

  /** A server-side dry run of `dir` (which must change nothing), then the apply; both list every rendered object. */
  function dryRunThenApply(dir: string): void {
    const objects = rendered(dir);
    const before = kubectl('get', 'all,configmaps,networkpolicies,poddisruptionbudgets', '-n', NAMESPACE, '-o', 'name');
    const { stdout: dryRun, warnings } = kubectlWithWarnings(['apply', '-k', dir, '--server-side', '--dry-run=server']);
    // The namespace enforces the restricted Pod Security Standard; the API server warns of any pod template below it.
    assert.equal(warnings, '', 'no warnings (Pod Security) from the API server');
    for (const object of objects) {
      assert.match(dryRun, new RegExp(`${object.split('/')[0].toLowerCase()}[^ ]*/${object.split('/')[1]} serverside-applied \\(server dry run\\)`), `${object} in the dry run:\n${dryRun}`);
    }
    assert.equal(kubectl('get', 'all,configmaps,networkpolicies,poddisruptionbudgets', '-n', NAMESPACE, '-o', 'name'), before, 'the dry run changed nothing');
    const applied = kubectl('apply', '-k', dir, '--server-side');
    for (const object of objects) assert.match(applied, new RegExp(`/${object.split('/')[1]} serverside-applied`), `${object} applied:\n${applied}`);
  }

  /** Waits until the signaler's DaemonSet, rolled out with `image`, has one pod, bound, on each of `nodes`, and none elsewhere. */
  async function signalersOn(nodes: string[], image: string): Promise<void> {
    let seen = '';
    const predicate = async (): Promise<boolean> => {
      const pods = (await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: 'app.kubernetes.io/name=spot-guard-signaler' })).items.filter((pod) => !pod.metadata?.deletionTimestamp);
      seen = pods.map((pod) => `${pod.spec?.nodeName ?? '(unbound)'} ${pod.spec?.containers[0].image}`).join('; ');
      return pods.length === nodes.length && pods.every((pod) => pod.spec?.containers[0].image === image && bound(pod)) && sameSet(pods.map((pod) => pod.spec?.nodeName ?? ''), nodes);
    };
    const events = (): string => kubectl('get', 'events', '-n', NAMESPACE, '--field-selector', 'type=Warning', '-o', 'custom-columns=OBJECT:.involvedObject.name,MESSAGE:.message').slice(-3000);
    await waitUntil(`signaler pods (${image}) bound on exactly ${nodes.join(', ')}`, predicate, 90_000, () => `seen (node, image): ${seen || 'no pod'}\nwarning events:\n${events()}`);
    const daemonSet = await apps.readNamespacedDaemonSet({ name: 'spot-guard-signaler', namespace: NAMESPACE });
    assert.equal(daemonSet.status?.desiredNumberScheduled, nodes.length, 'the DaemonSet controller wants a pod on exactly the spot nodes');
  }

  it('the base: dry run, then applied; the signaler on every spot-labelled node and no other, the worker scheduled', async function () {
    // The base's Namespace first (with its Pod Security labels): a server-side dry run of objects in a namespace that
    // does not exist yet is refused.
    const namespace = (loadAllYaml(kubectl('kustomize', BASE)) as KubernetesObject[]).filter((object) => object.kind === 'Namespace');
    assert.equal(namespace.length, 1, 'the base has its Namespace');
    kubectlWithWarnings(['apply', '--server-side', '-f', '-'], JSON.stringify(namespace[0]));
    dryRunThenApply(BASE);
    await signalersOn(BASE_SPOT_NODES, 'spot-guard');
    let workers: V1Pod[] = [];
    await until('two worker pods bound by the scheduler', async () => {
      workers = (await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: 'app.kubernetes.io/name=spot-guard-worker' })).items;
      return workers.length === 2 && workers.every(bound);
    });
    const workerNodes = workers.map((pod) => pod.spec?.nodeName ?? '');
    assert.ok(workerNodes.every((node) => !BASE_SPOT_NODES.includes(node)), `the workers preferably off spot nodes, with room elsewhere: ${workerNodes.join(', ')}`);
    assert.notEqual(workerNodes[0], workerNodes[1], 'the two workers on different nodes');
  });

  it('the example overlay: dry run, then applied; its own node label added to the three, its image rolled out', async function () {
    dryRunThenApply(OVERLAY);
    await signalersOn(OVERLAY_SPOT_NODES, 'registry.example.com/spot-guard:1.0.0');
    const worker = await apps.readNamespacedDeployment({ name: 'spot-guard-worker', namespace: NAMESPACE });
    assert.equal(worker.spec?.replicas, 2);
    assert.equal(worker.spec?.template.spec?.containers[0].image, 'registry.example.com/spot-guard:1.0.0');
    const account = await core.readNamespacedServiceAccount({ name: 'spot-guard-worker', namespace: NAMESPACE });
    assert.match(account.metadata?.annotations?.['eks.amazonaws.com/role-arn'] ?? '', /^arn:aws:iam::\d{12}:role\//, 'the IAM role for the worker');
  });

  it("the settings the overlay gives the worker and the signaler pass each one's own validation", async function () {
    const workerEnv = await configMapOf('spot-guard-worker', 'Deployment');
    const loaded = loadConfig(workerEnv);
    assert.ok(loaded.ok, `the worker accepts its ConfigMap: ${loaded.ok ? '' : loaded.errors.join('; ')}`);
    assert.equal(loaded.config.temporal.address, workerEnv.TEMPORAL_ADDRESS, 'a Temporal address: no embedded dev server in a cluster');
    assert.deepEqual([loaded.config.intake?.address, loaded.config.metricsAddress, loaded.config.healthAddress], ['0.0.0.0:8443', '0.0.0.0:9464', '0.0.0.0:8080']);
    assert.ok(loaded.config.intake?.tls, 'the intake serves HTTPS');
    const signaler = loadSignalerConfig({ ...(await configMapOf('spot-guard-signaler', 'DaemonSet')), NODE_NAME: 'spot-eks' });
    assert.ok('settings' in signaler, `the signaler accepts its ConfigMap: ${'errors' in signaler ? signaler.errors.join('; ') : ''}`);
    assert.match(signaler.settings.intakeUrl, /^https:\/\/spot-guard-intake\.spot-guard\.svc:8443$/, 'the intake Service, over HTTPS');
    const daemonSet = await apps.readNamespacedDaemonSet({ name: 'spot-guard-signaler', namespace: NAMESPACE });
    const pod = daemonSet.spec?.template.spec;
    const volume = pod?.volumes?.find((v) => v.projected?.sources?.some((source) => source.serviceAccountToken));
    const token = volume?.projected?.sources?.find((source) => source.serviceAccountToken)?.serviceAccountToken;
    const mount = pod?.containers[0].volumeMounts?.find((m) => m.name === volume?.name);
    assert.equal(token?.audience, 'spot-guard-intake', "the projected token is for the intake's audience");
    assert.equal(`${mount?.mountPath}/${token?.path}`, signaler.settings.tokenFile, 'mounted where the signaler reads it');
  });

  it('SubjectAccessReviews: the worker may do exactly what its steps need, the signaler nothing', async function () {
    const authorization = stack.kubeConfig().makeApiClient(AuthorizationV1Api);
    const allowed = async (account: string, right: Right, verb: string, namespace: string): Promise<boolean> => {
      const review = await authorization.createSubjectAccessReview({
        body: {
          spec: {
            user: `system:serviceaccount:${NAMESPACE}:${account}`,
            groups: ['system:serviceaccounts', `system:serviceaccounts:${NAMESPACE}`, 'system:authenticated'],
            resourceAttributes: { verb, group: right.group, resource: right.resource, subresource: right.subresource, namespace },
          },
        },
      });
      return review.status?.allowed === true;
    };
    // Every right the roles grant is among those asked about, so a right added to rbac.yaml cannot go unchecked.
    for (const granted of grantedRights()) {
      assert.ok(
        RIGHTS.some((right) => `${right.group}/${right.resource}${right.subresource ? `/${right.subresource}` : ''}` === granted.name) && VERBS.includes(granted.verb),
        `rbac.yaml grants ${granted.verb} ${granted.name}, which this test does not ask about: add it to RIGHTS and to workerMayDo`,
      );
    }
    const wrong: string[] = [];
    let asked = 0;
    for (const right of RIGHTS) {
      const questions = VERBS.flatMap((verb) => NAMESPACES.map((namespace) => ({ verb, namespace })));
      await Promise.all(
        questions.map(async ({ verb, namespace }) => {
          const what = `${verb} ${right.group || 'core'}/${right.resource}${right.subresource ? `/${right.subresource}` : ''} in ${namespace || 'all namespaces'}`;
          const [worker, signaler] = await Promise.all([allowed('spot-guard-worker', right, verb, namespace), allowed('spot-guard-signaler', right, verb, namespace)]);
          asked += 2;
          if (worker !== workerMayDo(right, verb, namespace)) wrong.push(`worker ${worker ? 'may' : 'may not'} ${what}`);
          if (signaler) wrong.push(`signaler may ${what}`);
        }),
      );
    }
    assert.deepEqual(wrong, [], `of ${asked} reviews`);
    assert.equal(asked, RIGHTS.length * VERBS.length * NAMESPACES.length * 2);
  });

  /** The data of the ConfigMap the `kind`'s pod template takes its environment from (its generated name has a hash). */
  async function configMapOf(prefix: string, kind: 'Deployment' | 'DaemonSet'): Promise<Record<string, string>> {
    const template = kind === 'Deployment'
      ? (await apps.readNamespacedDeployment({ name: prefix, namespace: NAMESPACE })).spec?.template
      : (await apps.readNamespacedDaemonSet({ name: prefix, namespace: NAMESPACE })).spec?.template;
    const name = template?.spec?.containers[0].envFrom?.[0].configMapRef?.name ?? '';
    assert.ok(name.startsWith(`${prefix}-`), `${kind} ${prefix} takes its settings from a generated ConfigMap (${name})`);
    return (await core.readNamespacedConfigMap({ name, namespace: NAMESPACE })).data ?? {};
  }
});

/** Each verb on each "group/resource[/subresource]" a Role or ClusterRole in deploy/base/rbac.yaml grants. */
function grantedRights(): { name: string; verb: string }[] {
  const roles = (loadAllYaml(readFileSync(join(BASE, 'rbac.yaml'), 'utf8')) as (KubernetesObject & { rules?: V1PolicyRule[] })[]).filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole');
  return roles.flatMap((role) =>
    (role.rules ?? []).flatMap((rule) =>
      (rule.apiGroups ?? []).flatMap((group) => (rule.resources ?? []).flatMap((resource) => rule.verbs.map((verb) => ({ name: `${group}/${resource}`, verb })))),
    ),
  );
}

function kwokNode(node: (typeof NODES)[number]): V1Node {
  return {
    metadata: { name: node.name, labels: { ...node.labels, 'kubernetes.io/hostname': node.name }, annotations: { [KWOK_ANNOTATION]: 'fake' } },
    spec: { taints: node.taints, unschedulable: node.cordoned },
    status: { allocatable: { cpu: '4', memory: '16Gi', pods: '110' }, capacity: { cpu: '4', memory: '16Gi', pods: '110' } },
  };
}

const isReady = (node: V1Node): boolean => node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** Bound to a node by the scheduler (the DaemonSet's and ReplicaSet's pods are created unbound). */
const bound = (pod: V1Pod): boolean => Boolean(pod.spec?.nodeName) && (pod.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'True') ?? false);

const sameSet = (a: string[], b: string[]): boolean => a.length === b.length && [...a].sort().join() === [...b].sort().join();
