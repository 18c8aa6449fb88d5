// Registers Spot Guard's search attributes on the namespace so the Temporal UI and CLI can filter workflows by
// instance, node, group, phase and outcome. Idempotent: attributes already there are left alone.
import type { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { allSearchAttributeKeys } from '../workflows/definitions.js';

export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set(Object.keys(existing.customAttributes ?? {}));
  const missing = allSearchAttributeKeys.filter((key) => !known.has(key.name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(
      missing.map((key) => [key.name, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
    ),
  });
  return missing.map((key) => key.name);
}
