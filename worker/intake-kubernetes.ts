// The intake's Kubernetes side: a TokenReview for the signaler's token (which pod and node it was bound to) and the
// two reads that check it (the pod, the node). Rights: tokenreviews create, pods get in the signaler's namespace,
// nodes get (deploy/base/rbac.yaml).
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { kubernetesStatus } from '../activities/errors.js';
import type { IntakeDeps, ReviewedToken } from './intake.js';

/** The keys under which a TokenReview names the pod and node a bound ServiceAccount token was issued for. */
const EXTRA = {
  podName: 'authentication.kubernetes.io/pod-name',
  podUid: 'authentication.kubernetes.io/pod-uid',
  nodeName: 'authentication.kubernetes.io/node-name',
} as const;

export function kubernetesIntakeDeps(config: KubeConfig): Pick<IntakeDeps, 'reviewToken' | 'readPod' | 'readNode'> {
  const authentication = config.makeApiClient(AuthenticationV1Api);
  const core = config.makeApiClient(CoreV1Api);
  const missingIsUndefined = (error: unknown): undefined => {
    if (kubernetesStatus(error) === 404) return undefined;
    throw error;
  };
  return {
    async reviewToken(token, audience): Promise<ReviewedToken> {
      const review = await authentication.createTokenReview({ body: { spec: { token, audiences: [audience] } } });
      const status = review.status ?? {};
      const extra = status.user?.extra ?? {};
      return {
        authenticated: status.authenticated === true,
        ...(status.error ? { error: status.error } : {}),
        audiences: status.audiences ?? [],
        ...(status.user?.username ? { username: status.user.username } : {}),
        ...(extra[EXTRA.podName]?.[0] ? { podName: extra[EXTRA.podName]?.[0] } : {}),
        ...(extra[EXTRA.podUid]?.[0] ? { podUid: extra[EXTRA.podUid]?.[0] } : {}),
        ...(extra[EXTRA.nodeName]?.[0] ? { nodeName: extra[EXTRA.nodeName]?.[0] } : {}),
      };
    },
    async readPod(namespace, name) {
      const pod = await core.readNamespacedPod({ namespace, name }).catch(missingIsUndefined);
      return pod && { ...(pod.metadata?.uid ? { uid: pod.metadata.uid } : {}), ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}) };
    },
    async readNode(name) {
      const node = await core.readNode({ name }).catch(missingIsUndefined);
      return node && (node.spec?.providerID ? { providerID: node.spec.providerID } : {});
    },
  };
}
