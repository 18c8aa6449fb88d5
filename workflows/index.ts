// The workflow bundle's entry point: every workflow type the worker registers.
export { capacityWorkflow } from './capacity.js';
export { monitorWorkflow } from './monitor.js';
export { rebalanceWorkflow } from './rebalance.js';
