// Sorting failures into the two kinds Temporal needs: input that can never succeed (non-retryable, with a message an
// operator can act on) and everything transient (thrown as is, so the activity's retry policy backs off and retries).
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';

/** Failure types the workflows branch on; also shown in the Temporal UI next to the message. */
export const FailureType = {
  invalidInput: 'InvalidInput',
  nodeNotFound: 'NodeNotFound',
  instanceMismatch: 'InstanceMismatch',
  groupNotFound: 'AutoScalingGroupNotFound',
  instanceNotInGroup: 'InstanceNotInGroup',
  groupNotProtected: 'GroupNotProtected',
  awsRejected: 'AwsRequestRejected',
  kubernetesRejected: 'KubernetesRequestRejected',
  awsThrottled: 'AwsThrottled',
} as const;

export function nonRetryable(type: string, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: details === undefined ? [] : [details] });
}

// AWS answers that mean "slow down" or "busy right now": always worth retrying.
const AWS_TRANSIENT_CODES = new Set([
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'TooManyRequestsException',
  'ResourceContention',
  'ScalingActivityInProgress',
  'ServiceUnavailable',
  'InternalFailure',
  'RequestTimeout',
  'RequestTimeoutException',
]);

interface AwsErrorShape {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: 'client' | 'server';
}

export function isAwsTransient(error: unknown): boolean {
  const e = error as AwsErrorShape;
  if (e?.name && AWS_TRANSIENT_CODES.has(e.name)) return true;
  if (/rate exceeded|throttl/i.test(e?.message ?? '')) return true;
  const status = e?.$metadata?.httpStatusCode;
  // No status: network error, timeout, credentials not yet available. Server faults: AWS's side. Both transient.
  if (status === undefined || status >= 500 || status === 429) return true;
  return e.$fault === 'server';
}

export function isAwsThrottling(error: unknown): boolean {
  const e = error as AwsErrorShape;
  return /^(Throttling|ThrottlingException|RequestLimitExceeded|RequestThrottled|TooManyRequestsException)$/.test(e?.name ?? '') ||
    /rate exceeded|throttl/i.test(e?.message ?? '') ||
    e?.$metadata?.httpStatusCode === 429;
}

/** Backoff after the nth throttled attempt: exponential from 2 s, capped at 60 s, with full jitter. */
export function throttleDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(60_000, 2_000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(1_000 + random() * (ceiling - 1_000));
}

function currentAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1; // called outside an activity (tests, tools)
  }
}

/**
 * Runs one AWS call; a request AWS refuses for good becomes a non-retryable failure naming what was asked. A throttled
 * call becomes a retryable failure with a jittered, growing delay: every workflow that shares the account's Auto
 * Scaling bucket backs off at its own pace instead of retrying in lockstep. Activities take absolute targets, so a
 * retry never applies a change twice.
 */
export async function awsCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isAwsThrottling(error)) {
      const e = error as AwsErrorShape;
      throw ApplicationFailure.create({
        type: FailureType.awsThrottled,
        message: `AWS throttled the request to ${what}: ${e.name ?? 'Error'}: ${e.message ?? String(error)}`,
        nextRetryDelay: throttleDelayMs(currentAttempt()),
      });
    }
    if (isAwsTransient(error)) throw error;
    const e = error as AwsErrorShape;
    throw nonRetryable(FailureType.awsRejected, `AWS refused to ${what}: ${e.name ?? 'Error'}: ${e.message ?? String(error)}`);
  }
}

interface KubernetesErrorShape {
  code?: number;
  body?: unknown;
  message?: string;
}

export function kubernetesStatus(error: unknown): number | undefined {
  const code = (error as KubernetesErrorShape)?.code;
  return typeof code === 'number' && code >= 100 && code < 600 ? code : undefined;
}

export function isKubernetesTransient(error: unknown): boolean {
  const status = kubernetesStatus(error);
  // No HTTP status: connection refused/reset, DNS, TLS handshake, timeout.
  return status === undefined || status === 408 || status === 409 || status === 429 || status >= 500;
}

/** Runs one Kubernetes call; a request the API server refuses for good becomes a non-retryable failure. */
export async function kubernetesCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isKubernetesTransient(error)) throw error;
    throw nonRetryable(
      FailureType.kubernetesRejected,
      `the Kubernetes API refused to ${what}: HTTP ${kubernetesStatus(error)}: ${describeKubernetesBody(error)}`,
    );
  }
}

function describeKubernetesBody(error: unknown): string {
  const body = (error as KubernetesErrorShape)?.body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      // not JSON: fall through to the raw text
    }
    return body.slice(0, 500);
  }
  if (body && typeof body === 'object' && 'message' in body) return String(body.message);
  return (error as Error)?.message ?? String(error);
}
