// Registers Spot Guard's search attributes on the namespace so the Temporal UI and CLI can filter workflows by
// instance, node, group, phase and outcome. Idempotent: attributes already there are left alone.
import type { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { allSearchAttributeKeys } from '../workflows/shared/search-attributes.js';

const GRPC_UNIMPLEMENTED = 12;

export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const known = new Set<string>();
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    for (const name of Object.keys(existing.customAttributes ?? {})) known.add(name);
  } catch (error) {
    // The time-skipping test server can add search attributes but not list them: add them all there.
    if ((error as { code?: number }).code !== GRPC_UNIMPLEMENTED) throw error;
  }
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
