import { ApplicationFailure } from '@temporalio/workflow';

/** The innermost message of a failure chain (ActivityFailure → ApplicationFailure → ...), the one an operator can act on. */
export function rootMessage(error: unknown): string {
  let current: unknown = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  return current instanceof Error ? current.message : String(current);
}

/** The type of the innermost typed ApplicationFailure of a failure chain (BelowMinSize, say), or undefined. */
export function failureType(error: unknown): string | undefined {
  let type: string | undefined;
  for (let current: unknown = error; current instanceof Error; current = current.cause) {
    if (current instanceof ApplicationFailure && current.type) type = current.type;
  }
  return type;
}
