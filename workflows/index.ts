// The workflow bundle's entry point: every workflow type the worker registers.
export { capacityWorkflow } from './capacity/workflow.js';
export { monitorWorkflow } from './monitor/workflow.js';
export { rebalanceWorkflow } from './rebalance/workflow.js';
export { webhookWorkflow } from './webhook/workflow.js';
