// The benchmark worker's workflow bundle: Spot Guard's workflows (the capacity and monitor workflows run beside the
// naive one, as in production) and the naive strategy's.
export * from '../../workflows/index.js';
export { naiveRebalanceWorkflow } from './workflow.js';
