// Pure helpers over Kubernetes objects: resource quantities, label selectors, pod requests and owners.
import type { V1LabelSelector, V1Node, V1Pod } from '@kubernetes/client-node';
import type { PodOwner } from '../workflows/shared/activity-types.js';

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

/** A Kubernetes quantity ("500m", "1.5", "128Mi", "1G", "1e3") in base units (cores, bytes). */
export function parseQuantity(quantity: string | undefined): number {
  if (quantity === undefined || quantity === '') return 0;
  const match = /^([+-]?\d+(?:\.\d+)?|[+-]?\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/.exec(quantity.trim());
  if (!match) throw new Error(`"${quantity}" is not a Kubernetes quantity`);
  const number = Number(match[1]);
  if (match[2]) return number * 10 ** Number(match[2].slice(1));
  const suffix = match[3] ?? '';
  return number * (BINARY[suffix] ?? DECIMAL[suffix] ?? 1);
}

export interface Resources {
  cpu: number;
  memory: number;
}

/** What a pod asks the scheduler for: the sum of its containers, or its largest init container if that is more. */
export function podRequests(pod: V1Pod): Resources {
  const sum = (containers: { resources?: { requests?: Record<string, string> } }[] | undefined) =>
    (containers ?? []).reduce(
      (total, c) => ({
        cpu: total.cpu + parseQuantity(c.resources?.requests?.cpu),
        memory: total.memory + parseQuantity(c.resources?.requests?.memory),
      }),
      { cpu: 0, memory: 0 },
    );
  const main = sum(pod.spec?.containers);
  const init = (pod.spec?.initContainers ?? []).map((c) => sum([c]));
  return {
    cpu: Math.max(main.cpu, ...init.map((r) => r.cpu)),
    memory: Math.max(main.memory, ...init.map((r) => r.memory)),
  };
}

export function nodeAllocatable(node: V1Node): Resources {
  const allocatable = node.status?.allocatable ?? node.status?.capacity ?? {};
  return { cpu: parseQuantity(allocatable.cpu), memory: parseQuantity(allocatable.memory) };
}

export function formatResources(r: Resources): string {
  return `cpu ${Math.round(r.cpu * 1000)}m, memory ${Math.round(r.memory / 2 ** 20)}Mi`;
}

/** Does the selector match these labels? An empty selector matches everything, as for a PodDisruptionBudget. */
export function selectorMatches(selector: V1LabelSelector | undefined, labels: Record<string, string> = {}): boolean {
  if (!selector) return false; // a PDB without a selector selects nothing in policy/v1
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const expression of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, expression.key);
    const value = labels[expression.key];
    const values = expression.values ?? [];
    switch (expression.operator) {
      case 'In':
        if (!has || !values.includes(value)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(value)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** The controller that would recreate this pod elsewhere, if any. */
export function podController(pod: V1Pod): PodOwner | undefined {
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller === true);
  if (!owner) return undefined;
  return { namespace: pod.metadata?.namespace ?? 'default', kind: owner.kind, name: owner.name, uid: owner.uid };
}
