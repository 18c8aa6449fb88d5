// Guards for activity input: a malformed id can never succeed, so it fails at once, non-retryable, naming the value.
import { ASG_NAME_PATTERN, INSTANCE_ID_PATTERN, NODE_NAME_PATTERN } from '../workflows/shared/ids.js';
import { FailureType, nonRetryable } from './errors.js';

export function requireInstanceId(instanceId: string): void {
  if (typeof instanceId !== 'string' || !INSTANCE_ID_PATTERN.test(instanceId)) {
    throw nonRetryable(FailureType.invalidInput, `"${instanceId}" is not an EC2 instance id (expected i- and 8 or 17 hex digits)`);
  }
}

export function requireNodeName(nodeName: string): void {
  if (typeof nodeName !== 'string' || nodeName.length > 253 || !NODE_NAME_PATTERN.test(nodeName)) {
    throw nonRetryable(FailureType.invalidInput, `"${nodeName}" is not a valid Kubernetes node name (a lowercase DNS subdomain)`);
  }
}

export function requireGroupName(asgName: string): void {
  if (typeof asgName !== 'string' || !ASG_NAME_PATTERN.test(asgName)) {
    throw nonRetryable(FailureType.invalidInput, `"${asgName}" is not a valid Auto Scaling group name (1-255 characters, no blanks)`);
  }
}
