// Replays every recorded history (test/histories/*.json, one per scenario) against the current workflow code. A change
// that would break running workflows fails here with a nondeterminism error. Until the first release the histories are
// re-recorded with the code (npm run record-histories); from v1.0.0 on, released histories stay (docs/versioning.md).
import assert from 'node:assert/strict';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { recordedHistories } from './helpers/histories.js';
import { installQuietRuntime, workflowBundle } from './helpers/temporal.js';

/** The error of each history's replay, by file (undefined: replayed cleanly). */
async function replay(histories: (HistoryAndWorkflowId & { file: string })[]): Promise<Map<string, string | undefined>> {
  installQuietRuntime();
  const errors = new Map<string, string | undefined>();
  const byWorkflowId = new Map(histories.map((h) => [h.workflowId, h.file]));
  for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
    errors.set(byWorkflowId.get(result.workflowId) ?? result.workflowId, result.error ? String(result.error) : undefined);
  }
  return errors;
}

describe('replay of recorded histories', function () {
  it('holds one history per scenario, of every workflow type, and replays each without nondeterminism', async function () {
    const histories = recordedHistories();
    const scenarios = histories.map((h) => h.file.replace(/\.json$/, ''));
    assert.deepEqual(scenarios.filter((s) => /-v\d+$/.test(s)), [], 'no histories of superseded versions before the first release');
    for (const kind of ['rebalance', 'capacity', 'monitor']) assert.ok(scenarios.some((s) => s.startsWith(`${kind}-`)), `a ${kind} history: ${scenarios.join(', ')}`);
    const errors = await replay(histories);
    assert.equal(errors.size, histories.length, 'every history was replayed');
    for (const [file, error] of errors) assert.equal(error, undefined, `${file}: ${error}`);
  });

  it('fails a history whose activity was swapped for another: the replay test can fail', async function () {
    const [original] = recordedHistories().filter((h) => h.file === 'rebalance-spot-success.json');
    assert.ok(original, 'the spot-success history is recorded');
    type Event = { activityTaskScheduledEventAttributes?: { activityType?: { name?: string | null } | null } | null };
    const events = (original.history as { events?: Event[] | null }).events ?? [];
    const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'evictPods');
    assert.ok(scheduled?.activityTaskScheduledEventAttributes?.activityType, 'the drain is an activity in the history');
    scheduled.activityTaskScheduledEventAttributes.activityType.name = 'awaitNodeReady';
    const errors = await replay([{ ...original, file: 'swapped' }]);
    assert.match(errors.get('swapped') ?? '', /[Nn]ondeterminis/);
  });
});
