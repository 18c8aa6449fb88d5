/** The innermost message of a failure chain (ActivityFailure → ApplicationFailure → ...), the one an operator can act on. */
export function rootMessage(error: unknown): string {
  let current: unknown = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  return current instanceof Error ? current.message : String(current);
}
