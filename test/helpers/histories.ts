// Recorded workflow histories for the replay test. Tests call recordHistory at the end of representative runs; the
// files are written only when SPOT_GUARD_RECORD_HISTORIES=1 (npm run record-histories) and are committed, one per
// scenario; from the first release on, released histories are kept beside them (docs/versioning.md).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HistoryAndWorkflowId, WorkflowHandle } from '@temporalio/client';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils.js';

/** test/histories in the source tree (the tests run from dist/test). */
export const historiesDir = fileURLToPath(new URL('../../../test/histories', import.meta.url));

export async function recordHistory(handle: WorkflowHandle, name: string): Promise<void> {
  if (process.env.SPOT_GUARD_RECORD_HISTORIES !== '1') return;
  mkdirSync(historiesDir, { recursive: true });
  const history = await handle.fetchHistory();
  // The workflow id is kept with the history: workflows that compare signals with ids derived from their own id
  // (the capacity workflow's answers) must replay under the id they ran with.
  const recorded = { workflowId: handle.workflowId, ...(JSON.parse(historyToJSON(history)) as Record<string, unknown>) };
  writeFileSync(join(historiesDir, `${name}.json`), `${JSON.stringify(recorded, null, 1)}\n`);
}

export function recordedHistories(): (HistoryAndWorkflowId & { file: string })[] {
  return readdirSync(historiesDir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => {
      const { workflowId, ...history } = JSON.parse(readFileSync(join(historiesDir, file), 'utf8')) as { workflowId?: string };
      return { file, workflowId: workflowId ?? file.replace(/\.json$/, ''), history: historyFromJSON(history) };
    });
}
