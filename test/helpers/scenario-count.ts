// Counts the end-to-end and crash scenarios that passed, printed once at the end of the whole run.
const passed = new Map<string, string[]>();

export function scenarioPassed(kind: string, title: string): void {
  passed.set(kind, [...(passed.get(kind) ?? []), title]);
}

export function scenarioSummary(): string {
  const line = (kind: string) => `${kind} scenarios passed: ${passed.get(kind)?.length ?? 0}`;
  return [line('end-to-end'), line('crash and fault')].join('\n');
}
