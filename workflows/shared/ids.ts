// Workflow ids and the shapes of the names Spot Guard acts on. Free of I/O: the workflow bundle imports it.

export const TASK_QUEUE_DEFAULT = 'spot-guard';

/** Workflow id of the rebalance workflow for one instance: a repeated notice for it can never start a second run. */
export function rebalanceWorkflowId(instanceId: string): string {
  return `spot-guard-rebalance-${instanceId}`;
}

/** Workflow id of the entity workflow that owns every desired-capacity change of one Auto Scaling group. */
export function capacityWorkflowId(asgName: string): string {
  return `spot-guard-capacity-${asgName}`;
}

/** Workflow id of the revert-to-spot monitor of one spot/on-demand pair. */
export function monitorWorkflowId(spotAsgName: string, onDemandAsgName: string): string {
  return `spot-guard-monitor-${spotAsgName}-${onDemandAsgName}`;
}

// EC2 instance ids: "i-" and 8 (legacy) or 17 hex digits.
export const INSTANCE_ID_PATTERN = /^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$/;
// Kubernetes node names are DNS subdomains (RFC 1123), at most 253 characters.
export const NODE_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Auto Scaling group names: 1-255 characters of the Unicode BMP except control characters; we also refuse blanks.
// eslint-disable-next-line no-control-regex -- control characters are exactly what a group name may not contain
export const ASG_NAME_PATTERN = /^[^\s\x00-\x1f\x7f]{1,255}$/;

export const isInstanceId = (value: unknown): value is string => typeof value === 'string' && INSTANCE_ID_PATTERN.test(value);
export const isNodeName = (value: unknown): value is string =>
  typeof value === 'string' && value.length <= 253 && NODE_NAME_PATTERN.test(value);

/** An Auto Scaling lifecycle state on the way out: Terminating, Terminating:Wait, Terminating:Proceed, Terminated. */
export function isTerminatingState(lifecycleState: string | undefined): boolean {
  return /^Terminat/.test(lifecycleState ?? '');
}

/**
 * Pod annotation an operator sets to let the monitor move a pod that no controller would recreate ("true"), or to
 * keep the monitor from moving a pod at all ("false").
 */
export const SAFE_TO_EVICT_ANNOTATION = 'spot-guard.io/safe-to-evict';
/** Cluster Autoscaler's annotation of the same meaning, honoured too: operators have set it already. */
export const CLUSTER_AUTOSCALER_SAFE_TO_EVICT_ANNOTATION = 'cluster-autoscaler.kubernetes.io/safe-to-evict';
