// Failures whose cause is known and outside the code: no credentials, a refusal by AWS or Kubernetes, a peer out of
// reach. The start-up preflight names them with their fix; an activity retried on one is logged in one line, since its
// stack says nothing the message does not. Everything else (a bug, a deadlocked workflow) keeps its stack trace.
import { ApplicationFailure } from '@temporalio/common';

interface FailureShape {
  name?: string;
  message?: string;
  code?: unknown;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

/** The AWS SDK's credential chain found nothing (or a source it tried failed). */
export function isMissingAwsCredentials(error: unknown): boolean {
  const e = error as FailureShape;
  return e?.name === 'CredentialsProviderError' || e?.name === 'TokenProviderError' || /Could not load credentials from any providers/.test(e?.message ?? '');
}

/** An answer from an AWS service (it has the SDK's response metadata): the request reached AWS, which refused it. */
export function isAwsServiceError(error: unknown): boolean {
  return typeof (error as FailureShape)?.$metadata?.httpStatusCode === 'number';
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/** A connection that could not be made or was lost, however deep the client wrapped it. */
export function isNetworkFailure(error: unknown, depth = 0): boolean {
  const e = error as FailureShape;
  if (!e || depth > 4) return false;
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return true;
  if (e.message === 'fetch failed') return true;
  return isNetworkFailure(e.cause, depth + 1);
}

/** An answer from the Kubernetes API server (the client's ApiException: a numeric HTTP code and a body). */
export function kubernetesStatus(error: unknown): number | undefined {
  const e = error as FailureShape & { body?: unknown };
  return typeof e?.code === 'number' && 'body' in (e as object) ? e.code : undefined;
}

const firstLine = (text: string | undefined): string => (text ?? '').split('\n', 1)[0]?.trim() ?? '';

/**
 * "Name: message" in one line when the cause is known (see above), undefined otherwise. An ApplicationFailure is the
 * activities' own verdict with a message written for the operator; its cause, if any, is named after it.
 */
export function oneLineCause(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const e = error as FailureShape;
  if (error instanceof ApplicationFailure) {
    const inner = error.cause ? oneLineCause(error.cause) : undefined;
    if (error.cause && !inner) return undefined;
    return `${error.type ?? error.name}: ${firstLine(error.message)}${inner ? ` (caused by ${inner})` : ''}`;
  }
  if (isMissingAwsCredentials(error)) return `${error.name}: ${firstLine(error.message)}`;
  if (isAwsServiceError(error)) return `${error.name}: ${firstLine(error.message)} (HTTP ${e.$metadata?.httpStatusCode})`;
  const status = kubernetesStatus(error);
  if (status !== undefined) return `Kubernetes API HTTP ${status}: ${kubernetesReason(error)}`;
  if (isNetworkFailure(error)) return `${error.name}: ${firstLine(error.message)}${networkDetail(error)}`;
  return undefined;
}

/** The Status message the API server sent, else the client's first line. */
export function kubernetesReason(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  const parsed = typeof body === 'string' ? safeJson(body) : body;
  const message = (parsed as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : firstLine((error as Error).message);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The system error under a client's wrapper ("fetch failed" says nothing; ECONNREFUSED 127.0.0.1:6443 does). */
function networkDetail(error: unknown, depth = 0): string {
  const cause = (error as FailureShape).cause as FailureShape | undefined;
  if (!cause || depth > 4) return '';
  if (typeof cause.code === 'string') return ` (${cause.code}${cause.message ? `: ${firstLine(cause.message)}` : ''})`;
  return networkDetail(cause, depth + 1);
}
