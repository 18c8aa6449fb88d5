// The worker's log lines: one JSON object per line off a terminal, with the SDK's workflow and activity attributes as
// fields; a failure of a known cause (no credentials, a refusal, a peer out of reach) in one line, any other failure
// with its stack; the Node.js version check that runs before the worker's dependencies load.
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import type { LogLevel } from '../../worker/config.js';
import { chooseLogFormat, createWorkerLog, sdkLogFunction } from '../../worker/log.js';
import { unsupportedNode } from '../../worker/node-version.js';

function captured(): { lines: { level: LogLevel; line: string }[]; write: (level: LogLevel, line: string) => void } {
  const lines: { level: LogLevel; line: string }[] = [];
  return { lines, write: (level, line) => lines.push({ level, line }) };
}

/** What the AWS SDK's credential chain throws when it finds nothing. */
function credentialsProviderError(): Error {
  return Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError', tryNextLink: false });
}

describe('worker log', function () {
  it('is JSON lines off a terminal and readable text on one, unless told otherwise', function () {
    assert.equal(chooseLogFormat('auto', false), 'json');
    assert.equal(chooseLogFormat('auto', true), 'text');
    assert.equal(chooseLogFormat('text', false), 'text');
    assert.equal(chooseLogFormat('json', true), 'json');
  });

  it("writes the worker's own lines as one JSON object each: level, time, message and fields", function () {
    const { lines, write } = captured();
    const log = createWorkerLog('json', write);
    log.info('worker polling task queues "a" and "b"', { instanceId: 'i-0123', message: 'not the message' });
    log.error('refusing to start');
    assert.equal(lines.length, 2);
    const first = JSON.parse(lines[0]?.line ?? '') as Record<string, unknown>;
    assert.deepEqual(Object.keys(first).slice(0, 3), ['level', 'time', 'message']);
    assert.equal(first.level, 'info');
    assert.equal(first.message, 'worker polling task queues "a" and "b"', 'a field never replaces the message');
    assert.equal(first.instanceId, 'i-0123');
    assert.ok(!Number.isNaN(Date.parse(String(first.time))));
    assert.equal(lines[1]?.level, 'ERROR');
  });

  it("gives the SDK's activity and workflow attributes as fields (runId, activityType), without the task token", function () {
    const { lines, write } = captured();
    sdkLogFunction('json', write)({
      level: 'INFO',
      message: 'node cordoned',
      timestampNanos: 1_764_720_000_123_000_000n,
      meta: { sdkComponent: 'activity', workflowId: 'rebalance-i-0123', workflowRunId: 'run-1', activityType: 'cordonNode', taskToken: 'c2VjcmV0', attempt: 2, node: 'n1' },
    });
    const line = JSON.parse(lines[0]?.line ?? '') as Record<string, unknown>;
    assert.equal(line.time, '2025-12-03T00:00:00.123Z');
    assert.equal(line.workflowId, 'rebalance-i-0123');
    assert.equal(line.runId, 'run-1');
    assert.equal(line.activityType, 'cordonNode');
    assert.equal(line.component, 'activity');
    assert.equal(line.attempt, 2);
    assert.equal(line.taskToken, undefined, 'a task token would let a log reader complete the activity');
    assert.equal(lines[0]?.line.includes('\n'), false);
  });

  it('logs an activity failing for a known cause in one line and keeps the stack of any other failure', function () {
    for (const format of ['json', 'text'] as const) {
      const { lines, write } = captured();
      const sdk = sdkLogFunction(format, write);
      const at = { level: 'WARN' as const, message: 'Activity failed', timestampNanos: 0n };
      sdk({ ...at, meta: { activityType: 'describeGroup', error: credentialsProviderError() } });
      sdk({ ...at, meta: { activityType: 'describeGroup', error: Object.assign(new Error('User is not authorized'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }) } });
      sdk({ ...at, meta: { activityType: 'cordonNode', error: Object.assign(new Error('fetch failed'), { name: 'TypeError', cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' }) }) } });
      sdk({ ...at, meta: { activityType: 'verifyNode', error: ApplicationFailure.nonRetryable('node n1 has no instance i-1', 'InstanceMismatch') } });
      for (const { line } of lines) assert.equal(line.split('\n').length, 1, `${format}: one line: ${line}`);
      assert.match(lines[0]?.line ?? '', /CredentialsProviderError: Could not load credentials from any providers/);
      assert.match(lines[2]?.line ?? '', /ECONNREFUSED/, 'the system error under "fetch failed"');

      const bug = new TypeError("Cannot read properties of undefined (reading 'nodeName')");
      sdk({ ...at, meta: { activityType: 'cordonNode', error: bug } });
      sdk({ level: 'ERROR', message: 'Workflow task failed', timestampNanos: 0n, meta: { error: Object.assign(new Error('Potential deadlock detected'), { name: 'DeterminismViolationError' }) } });
      const [bugLine, deadlockLine] = lines.slice(-2).map(({ line }) => line);
      if (format === 'json') {
        assert.match(String((JSON.parse(bugLine ?? '') as Record<string, unknown>).errorStack), /TypeError: Cannot read[\s\S]*\n\s+at /);
        assert.match(String((JSON.parse(deadlockLine ?? '') as Record<string, unknown>).errorStack), /\n\s+at /);
      } else {
        assert.match(bugLine ?? '', /\n\s+at /, 'text: the stack on the lines below');
        assert.match(deadlockLine ?? '', /\n\s+at /);
      }
    }
  });
});

describe('Node.js version check', function () {
  it('names the version needed and scripts/start under an older Node, and lets a supported one through', function () {
    const refusal = unsupportedNode('20.20.2', '>=22.19', '/usr/bin/node');
    assert.ok(refusal);
    assert.match(refusal, />=22\.19/);
    assert.match(refusal, /20\.20\.2/);
    assert.match(refusal, /scripts\/start/);
    assert.ok(unsupportedNode('22.18.9', '>=22.19'));
    for (const version of ['22.19.0', '22.20.1', '24.21.0', '25.0.0']) assert.equal(unsupportedNode(version, '>=22.19'), undefined, version);
    assert.equal(unsupportedNode('20.0.0', '^22 || ^24'), undefined, 'a range it does not read is left to the worker');
  });

  it("reads the range from package.json's engines", function () {
    assert.ok(unsupportedNode('1.0.0'), 'package.json has an engines range');
    assert.equal(unsupportedNode(process.versions.node), undefined, 'the Node.js running the tests is supported');
  });
});
