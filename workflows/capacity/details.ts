// The capacity workflow's current details, as the Temporal UI shows them: what it waits for between two turns of its
// loop, from its status alone (it outlives a continue-as-new, where the fixed summary of the first start is not kept,
// so it names the group too).
import type { CapacityStatus } from './api.js';

/** A wave holds hundreds: the first few name them, the count says the rest. */
const SHOWN = 5;
const listed = (ids: string[]): string => (ids.length > SHOWN ? `${ids.slice(0, SHOWN).join(', ')}, … (${ids.length - SHOWN} more)` : ids.join(', '));

export function capacityDetails(status: CapacityStatus): string {
  const { asgName, waiting, draining, drainQueue, drainBudget, books, pendingRequests } = status;
  const lines = [`capacity of ${asgName}`];
  if (pendingRequests.length > 0) lines.push(`${pendingRequests.length} request(s) to apply`);
  if (waiting.count > 0) {
    lines.push(`${waiting.count} rebalance(s) waiting for new instances: ${waiting.polls} poll(s) so far, ${waiting.assigned} given, ${waiting.launching} launching`);
  }
  if (waiting.late > 0) lines.push(`watching for ${waiting.late} late instance(s) of waits that ended`);
  if (draining.length > 0 || drainQueue.length > 0) {
    const limit = drainBudget ? ` of ${drainBudget.limit} (${drainBudget.budget})` : '';
    lines.push(`drain slots: ${draining.length} in use${limit}, ${drainQueue.length} queued${drainQueue[0] ? ` (next: node ${drainQueue[0].nodeName})` : ''}`);
  }
  if (books.length > 0) lines.push(`raised for ${books.length} warned instance(s) until they leave: ${listed(books.map((b) => b.instanceId))}`);
  if (lines.length === 1) lines.push('idle: waiting for requests');
  return lines.join('\n');
}
