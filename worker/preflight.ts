// The start-up preflight: before the worker polls, it reads every group of its pairs from AWS and asks the Kubernetes API
// server what it may do, and reports each problem once, in one line: what failed, why, how to fix it. The worker
// starts anyway (a role or a binding may be added while it runs; its activities retry until then).
import { type AutoScalingClient, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import { AuthorizationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { isAwsServiceError, isMissingAwsCredentials, isNetworkFailure, kubernetesReason, kubernetesStatus } from './failure-causes.js';

export interface PreflightTarget {
  autoScaling: Pick<AutoScalingClient, 'send'>;
  region: string;
  /** Every group of every pair, with where it was named (a setting, or the tag that found it). */
  groups: { setting: string; name: string }[];
  kubeConfig: KubeConfig;
  /** The intake's extra rights (TokenReviews, the signalers' pods in their namespace); undefined: intake off. */
  intakeNamespace?: string;
}

export interface Right {
  verb: string;
  resource: string;
  subresource?: string;
  group?: string;
  namespace?: string;
}

/** The worker's rights in deploy/base/rbac.yaml (a test checks that account passes this preflight). */
export const WORKER_RIGHTS: readonly Right[] = [
  ...['get', 'list', 'watch', 'patch'].map((verb) => ({ verb, resource: 'nodes' })),
  { verb: 'list', resource: 'pods' },
  { verb: 'create', resource: 'pods', subresource: 'eviction' },
  { verb: 'list', resource: 'poddisruptionbudgets', group: 'policy' },
  { verb: 'create', resource: 'events', namespace: 'default' },
];

export const intakeRights = (namespace: string): Right[] => [
  { verb: 'create', resource: 'tokenreviews', group: 'authentication.k8s.io' },
  { verb: 'get', resource: 'pods', namespace },
];

const CHECK_TIMEOUT_MS = 10_000;
const FIX_AWS_CREDENTIALS =
  'give the worker AWS credentials: an IAM role (EKS: IRSA or Pod Identity; EC2: the instance profile) or AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, with the rights of deploy/iam-policy.json';

/** Every problem found, one line each; none: the worker can read its groups and has its Kubernetes rights. */
export async function preflightProblems(target: PreflightTarget): Promise<string[]> {
  const [aws, kubernetes] = await Promise.all([groupProblems(target), kubernetesProblems(target)]);
  return [...aws, ...kubernetes];
}

/** DescribeAutoScalingGroups for every group (50 names a call): missing ones by name, or the one reason none could be read. */
async function groupProblems({ autoScaling, region, groups }: PreflightTarget): Promise<string[]> {
  try {
    const found = new Set<string | undefined>();
    const names = [...new Set(groups.map((g) => g.name))];
    for (let start = 0; start < names.length; start += 50) {
      const answer = await autoScaling.send(
        new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: names.slice(start, start + 50), MaxRecords: 100 }),
        { abortSignal: AbortSignal.timeout(CHECK_TIMEOUT_MS) },
      );
      for (const group of answer.AutoScalingGroups ?? []) found.add(group.AutoScalingGroupName);
    }
    return groups
      .filter((g) => !found.has(g.name))
      .map((g) => `AWS: no Auto Scaling group "${g.name}" (${g.setting}) in ${region}: check the name, AWS_REGION, and the account of the worker's credentials`);
  } catch (error) {
    return [`AWS: cannot read the groups ${groups.map((g) => `"${g.name}"`).join(' and ')} in ${region}: ${awsReasonAndFix(error)}`];
  }
}

function awsReasonAndFix(error: unknown): string {
  const e = error as Error & { $metadata?: { httpStatusCode?: number } };
  const reason = `${e.name}: ${(e.message ?? '').split('\n', 1)[0]}`;
  if (isMissingAwsCredentials(error)) return `no credentials found (${reason}): ${FIX_AWS_CREDENTIALS}`;
  if (isAwsServiceError(error)) {
    if (/AccessDenied|UnauthorizedOperation|NotAuthorized/.test(e.name) || e.$metadata?.httpStatusCode === 403) {
      return `refused (${reason}): allow autoscaling:DescribeAutoScalingGroups and the rest of deploy/iam-policy.json to the worker's role`;
    }
    if (/InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch|ExpiredToken|InvalidAccessKeyId/.test(e.name)) {
      return `the credentials were refused (${reason}): renew them or give the worker its IAM role`;
    }
    return `AWS answered ${reason}`;
  }
  if (isNetworkFailure(error)) return `cannot reach the Auto Scaling API (${reason}): check the network path to AWS (or AWS_ENDPOINT_URL_AUTO_SCALING)`;
  return reason;
}

/** A cheap read (one node), then one SelfSubjectAccessReview per right; the rights missing named in one line. */
async function kubernetesProblems({ kubeConfig, intakeNamespace }: PreflightTarget): Promise<string[]> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster || cluster.server === 'http://localhost:8080') {
    return ['Kubernetes: no kubeconfig and no in-cluster service account: set KUBECONFIG (or run the worker in the cluster with the service account of deploy/base/rbac.yaml)'];
  }
  const where = `the API server at ${cluster.server}`;
  try {
    await withTimeout(kubeConfig.makeApiClient(CoreV1Api).listNode({ limit: 1 }));
  } catch (error) {
    const status = kubernetesStatus(error);
    if (status === 401) return [`Kubernetes: ${where} refused the worker's credentials (HTTP 401: ${kubernetesReason(error)}): check the kubeconfig's user or the service account token`];
    if (status === undefined) return [`Kubernetes: cannot reach ${where} (${(error as Error).message}): check KUBECONFIG and the network path to it`];
    // 403 and others: the access reviews below say which rights are missing.
  }
  const rights = [...WORKER_RIGHTS, ...(intakeNamespace ? intakeRights(intakeNamespace) : [])];
  const authorization = kubeConfig.makeApiClient(AuthorizationV1Api);
  try {
    const allowed = await Promise.all(rights.map((right) => isAllowed(authorization, right)));
    const missing = rights.filter((_, i) => !allowed[i]).map(describeRight);
    if (missing.length === 0) return [];
    return [`Kubernetes: the worker may not ${missing.join(', ')} on ${where}: bind it the ClusterRole and Role of deploy/base/rbac.yaml (kubectl apply -f deploy/base/rbac.yaml; its service account is spot-guard/spot-guard-worker)`];
  } catch (error) {
    return [`Kubernetes: cannot ask ${where} what the worker may do (${kubernetesReason(error)}): it needs to create selfsubjectaccessreviews (every authenticated user may, by default)`];
  }
}

async function isAllowed(authorization: AuthorizationV1Api, right: Right): Promise<boolean> {
  const review = await withTimeout(
    authorization.createSelfSubjectAccessReview({
      body: { spec: { resourceAttributes: { verb: right.verb, resource: right.resource, subresource: right.subresource, group: right.group ?? '', namespace: right.namespace } } },
    }),
  );
  return review.status?.allowed === true;
}

const describeRight = (right: Right): string =>
  `${right.verb} ${right.resource}${right.subresource ? `/${right.subresource}` : ''}${right.group ? `.${right.group}` : ''}${right.namespace ? ` in ${right.namespace}` : ''}`;

function withTimeout<T>(promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`), { name: 'TimeoutError' })), CHECK_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
