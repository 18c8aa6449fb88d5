// The deployment files stay in step with the code: the IAM policy allows exactly the Auto Scaling actions the
// activities send, and writes only to the groups tagged as Spot Guard's (the tags the discovery reads). (deploy/base/rbac.yaml is checked against a real API server in
// the Kubernetes contract tests.)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENABLED_TAG, ON_DEMAND_ROLE, ROLE_TAG } from '../activities/pair-rules.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

interface Statement {
  Effect: string;
  Action: string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string>>;
}

/** The Auto Scaling API actions the activities send: every `new XCommand(` in activities/. */
function actionsSent(): Set<string> {
  const dir = join(repoRoot, 'activities');
  const actions = new Set<string>();
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.ts'))) {
    for (const match of readFileSync(join(dir, file), 'utf8').matchAll(/new (\w+)Command\(/g)) actions.add(`autoscaling:${match[1]}`);
  }
  return actions;
}

describe('deployment files', function () {
  const policy = JSON.parse(readFileSync(join(repoRoot, 'deploy', 'iam-policy.json'), 'utf8')) as { Statement: Statement[] };

  it('the IAM policy allows exactly the Auto Scaling actions the activities send', function () {
    const allowed = new Set(policy.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) => s.Action));
    const sent = actionsSent();
    assert.ok(sent.has('autoscaling:SetDesiredCapacity') && sent.size >= 4, `the activities were read: ${[...sent].join(', ')}`);
    assert.deepEqual([...allowed].sort(), [...sent].sort());
  });

  it('changes only the groups tagged as protected spot groups or on-demand fallbacks; reads (which take no resource-level permission) on "*"', function () {
    const conditions: Record<string, string>[] = [];
    for (const statement of policy.Statement) {
      const writes = statement.Action.filter((action) => !action.startsWith('autoscaling:Describe'));
      if (writes.length === 0) continue;
      assert.equal(writes.length, statement.Action.length, `reads and writes in separate statements: ${statement.Action.join(', ')}`);
      assert.deepEqual(Object.keys(statement.Condition ?? {}), ['StringEquals'], `every write is conditioned on a tag: ${statement.Action.join(', ')}`);
      conditions.push(statement.Condition?.StringEquals ?? {});
    }
    // One statement each (separate statements are or-ed; two conditions in one would need both tags on one group).
    assert.deepEqual(conditions, [{ [`aws:ResourceTag/${ENABLED_TAG}`]: 'true' }, { [`aws:ResourceTag/${ROLE_TAG}`]: ON_DEMAND_ROLE }]);
  });
});
