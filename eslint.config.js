// ESLint (flat config): typescript-eslint's type-checked recommended rules, the promise rules as errors, and the
// folder layering (which folder may import what). test/layers.test.ts checks the same layering on the whole import
// graph (cycles between folders included); the rules here point at the offending line while editing.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

// One restriction per folder an import must not reach, as a regex on the import string (relative paths of any
// depth: '../activities/x.js', '../../activities/x.js').
const folder = (name, message) => ({ regex: `^(\\.\\./)+${name}(/|$)`, caseSensitive: true, message });

const notTestOrBench = [
  folder('test', 'Production code must not import from test/ (test code and fakes are not shipped).'),
  folder('bench', 'Production code must not import from bench/ (benchmark code is not shipped).'),
];

// Workflow code runs in the SDK's deterministic sandbox, bundled on its own: no Node.js, no I/O clients, no
// activity/worker code. It owns the contracts (types included) that activities, worker and signaler import.
const workflowsRestrictions = {
  paths: builtinModules
    .filter((name) => !name.startsWith('node:'))
    .map((name) => ({
      name,
      message: 'Workflow code is deterministic and bundled for the sandbox: no Node.js built-ins (do I/O in an activity).',
    })),
  patterns: [
    {
      regex: '^node:',
      caseSensitive: true,
      message: 'Workflow code is deterministic and bundled for the sandbox: no Node.js built-ins (do I/O in an activity).',
    },
    {
      regex: '^@(aws-sdk|kubernetes)/',
      caseSensitive: true,
      message: 'Workflow code makes no AWS or Kubernetes calls: call an activity (its contract is in workflows/shared/activity-types.ts).',
    },
    {
      regex: '^@temporalio/(client|worker|activity|testing)(/|$)',
      caseSensitive: true,
      message: 'Workflow code may use only @temporalio/workflow and @temporalio/common: the others are Node.js-side packages.',
    },
    folder('activities', 'workflows/ owns the contracts and imports no other folder, types included: activities/ imports workflows/, not the reverse.'),
    folder('worker', 'workflows/ imports no other folder, types included: worker/ imports workflows/, not the reverse.'),
    folder('signaler', 'workflows/ imports no other folder, types included: signaler/ imports workflows/, not the reverse.'),
    folder('scripts', 'workflows/ imports no other folder: scripts/ are build and dev tools.'),
    ...notTestOrBench,
  ],
};

const activitiesRestrictions = {
  patterns: [
    folder('worker', 'activities/ must not import worker/: the worker wires activities up, not the reverse (pass settings in).'),
    folder('signaler', 'activities/ must not import signaler/: the signaler is a separate entry point that starts workflows.'),
    ...notTestOrBench,
  ],
};

const signalerRestrictions = {
  patterns: [
    folder('activities', 'signaler/ only starts and signals workflows: it talks to them through workflows/ contracts, not activities/.'),
    folder('worker', 'signaler/ must not import worker/: it runs where the worker does not (no worker process state).'),
    ...notTestOrBench,
  ],
};

const workerRestrictions = { patterns: [...notTestOrBench] };

export default defineConfig(
  {
    ignores: ['dist/', 'node_modules/', 'test/histories/', 'bench/results/'],
  },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // The point of this lint: a promise nobody awaits loses its rejection (and, in a workflow, its ordering).
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // tsc already reports unused locals and parameters (noUnusedLocals, noUnusedParameters in tsconfig.json).
      '@typescript-eslint/no-unused-vars': 'off',
      // Activities are members of the object literals the create*Activities factories return (methods closing over
      // their dependencies, or arrows handing a context to module-level functions); none uses `this`, and the Temporal
      // worker calls them unbound. Tests pass them around the same way (run(activities.taintNode, ...)): every finding
      // of this rule was that pattern.
      '@typescript-eslint/unbound-method': 'off',
      // `async` without `await` is deliberate here: it fits a Promise-returning signature (an activity, until()'s
      // condition, a pickPort stub) and turns a throw into a rejection.
      '@typescript-eslint/require-await': 'off',
      // A caught `unknown` handed on as a rejection (kubernetesCall(what, () => Promise.reject(error)) classifies an
      // error already caught) is a rethrow, which only-throw-error allows for `throw` by default too.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    },
  },
  {
    // The JavaScript files (this config, the .mjs scripts): ES modules run by Node.js, not in tsconfig.json.
    files: ['**/*.{js,mjs,cjs}'],
    languageOptions: {
      sourceType: 'module',
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly' },
    },
  },
  {
    // Small units a newcomer can read in one screen (issue 18): no production function over 60 lines, blank lines and
    // comments not counted. An activity factory builds a small context and maps each activity to a module-level
    // function over it; a long procedure is split into its named steps. Tests (test/) are exempt: a describe() block
    // holds its cases.
    files: ['{workflows,activities,worker,signaler,bench,scripts}/**/*.{ts,js,mjs}'],
    rules: { 'max-lines-per-function': ['error', { max: 60, skipBlankLines: true, skipComments: true }] },
  },
  { files: ['workflows/**/*.ts'], rules: { '@typescript-eslint/no-restricted-imports': ['error', workflowsRestrictions] } },
  { files: ['activities/**/*.ts'], rules: { '@typescript-eslint/no-restricted-imports': ['error', activitiesRestrictions] } },
  { files: ['signaler/**/*.ts'], rules: { '@typescript-eslint/no-restricted-imports': ['error', signalerRestrictions] } },
  { files: ['worker/**/*.ts'], rules: { '@typescript-eslint/no-restricted-imports': ['error', workerRestrictions] } },
);
