// Replays every committed history (test/histories/*.json) against the current workflow code. A change that would
// break running workflows fails here with a nondeterminism error; protect such changes with patched().
import assert from 'node:assert/strict';
import { Worker } from '@temporalio/worker';
import { recordedHistories } from './helpers/histories.js';
import { installQuietRuntime, workflowBundle } from './helpers/temporal.js';

describe('replay of recorded histories', function () {
  it('replays every recorded rebalance, capacity and monitor history, old and new, without nondeterminism', async function () {
    installQuietRuntime();
    const histories = recordedHistories();
    const kinds = new Set(histories.map((h) => h.file.split('-')[0]));
    for (const kind of ['rebalance', 'capacity', 'monitor']) {
      assert.ok(kinds.has(kind), `a ${kind} history is committed: ${histories.map((h) => h.file).join(', ')}`);
    }
    assert.ok(histories.some((h) => h.file.endsWith('-v1.json')), 'histories recorded by earlier workflow versions are kept');
    const results = Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories);
    let replayed = 0;
    for await (const result of results) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${result.error}`);
      replayed++;
    }
    assert.equal(replayed, histories.length);
  });
});
