// A root-level hook: after every file has run, say how many end-to-end and crash scenarios passed.
import { scenarioSummary } from './helpers/scenario-count.js';

after(function () {
  console.log(`\n${scenarioSummary()}`);
});
