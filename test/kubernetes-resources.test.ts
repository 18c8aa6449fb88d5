import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { parseQuantity, podRequests, selectorMatches } from '../activities/kubernetes-resources.js';

describe('Kubernetes resource helpers', function () {
  it('parses quantities in base units', function () {
    assert.equal(parseQuantity('500m'), 0.5);
    assert.equal(parseQuantity('2'), 2);
    assert.equal(parseQuantity('1.5'), 1.5);
    assert.equal(parseQuantity('128Mi'), 128 * 2 ** 20);
    assert.equal(parseQuantity('1G'), 1e9);
    assert.equal(parseQuantity('1e3'), 1000);
    assert.equal(parseQuantity(undefined), 0);
    assert.throws(() => parseQuantity('12 apples'), /"12 apples" is not a Kubernetes quantity/);
  });

  it('matches label selectors with policy/v1 semantics', function () {
    const labels = { app: 'web', tier: 'front' };
    assert.equal(selectorMatches(undefined, labels), false, 'no selector selects nothing');
    assert.equal(selectorMatches({}, labels), true, 'an empty selector selects every pod of the namespace');
    assert.equal(selectorMatches({ matchLabels: { app: 'web' } }, labels), true);
    assert.equal(selectorMatches({ matchLabels: { app: 'db' } }, labels), false);
    assert.equal(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'edge'] }] }, labels), true);
    assert.equal(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['front'] }] }, labels), false);
    assert.equal(selectorMatches({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, labels), true);
    assert.equal(selectorMatches({ matchExpressions: [{ key: 'app', operator: 'Exists' }] }, labels), true);
    assert.equal(selectorMatches({ matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, labels), false);
  });

  it('counts a pod\'s requests as the sum of its containers or its largest init container', function () {
    const pod: V1Pod = {
      spec: {
        containers: [
          { name: 'a', resources: { requests: { cpu: '250m', memory: '64Mi' } } },
          { name: 'b', resources: { requests: { cpu: '250m' } } },
        ],
        initContainers: [{ name: 'init', resources: { requests: { cpu: '1', memory: '32Mi' } } }],
      },
    };
    assert.deepEqual(podRequests(pod), { cpu: 1, memory: 64 * 2 ** 20 });
  });
});
