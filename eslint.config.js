import js from '@eslint/js';
import jestPlugin from 'eslint-plugin-jest';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// A clock reading: Date.now() or performance.now().
const NOW = "CallExpression[callee.object.name=/^(Date|performance)$/][callee.property.name='now']";

// Every Kubernetes client shares its identity's keep-alive pool (src/kube/shared-agent.ts).
const SHARED_AGENT = {
  selector: "NewExpression[callee.name='KubeConfig']",
  message: 'Use newKubeConfig() (src/kube/shared-agent.ts): one keep-alive pool per identity.',
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'src/generated/', 'coverage/', '.test-results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-constant-condition': ['error', { checkLoops: false }],
      'no-restricted-syntax': ['error', SHARED_AGENT],
    },
  },
  {
    // Type-aware rules, for src only (they need the program; tests keep the fast syntax-only pass).
    files: ['src/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A promise is awaited or handled: `.catch` with a reason, or inBackground
      // (src/common/background.ts), which logs the failure. `void` does not count: a rejection it
      // lets go is unhandled and ends the process.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }],
      // A file a newcomer reads in one sitting; the exceptions below say why they are longer.
      'max-lines': ['error', { max: 500, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // CommonJS on purpose: the guest agent's loader (guest/agent-loader.cjs) runs as a script.
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The CRD schema is one source by design (types, OpenAPI, CEL rules and explain text together).
    files: ['src/crds/katasandbox.ts'],
    rules: { 'max-lines': 'off' },
  },

  // Layers (docs/architecture.md): the controller never reaches into the node agent; the protocol
  // layer (src/agent) knows no Kubernetes; the guest knows neither the node agent nor Kubernetes.
  {
    files: ['src/controllers/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/node-agent/**'],
              message: 'The controller never imports the node agent.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/agent/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: '@kubernetes/client-node', message: 'The protocol layer knows no Kubernetes.' },
          ],
          patterns: [
            {
              group: ['**/kube/**', '**/crds/**', '**/controllers/**', '**/node-agent/**'],
              message:
                'The protocol layer (and the guest) knows neither Kubernetes nor the node agent.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    plugins: { jest: jestPlugin },
    rules: {
      // Every test reaches an assertion: expect, or a helper of ours that fails the test —
      // expect* (expectValid…), refuses (qemu-args), until/eventually (polling that throws when
      // the awaited state never comes).
      'jest/expect-expect': [
        'error',
        { assertFunctionNames: ['expect', 'expect*', 'refuses', 'until', 'eventually'] },
      ],
      // Tests never assert timings (benchmarks in bench/ print figures): no clock reading, or
      // arithmetic on one, as the value of an expect(...) or a matcher's argument; no elapsed time
      // compared with < <= > >=. A deadline for a polling loop (Date.now() < deadline) bounds a
      // wait, and a clock passed to the code under test (leaseIsFresh(l, Date.now())) is input:
      // both stay allowed. A lint rule rather than a test that scans test/: it reads the syntax
      // tree, not text, and names file and line in the editor and in make lint.
      'no-restricted-syntax': [
        'error',
        SHARED_AGENT,
        {
          selector: `CallExpression[callee.name='expect'] > :matches(${NOW}, BinaryExpression:has(${NOW}))`,
          message: 'A test asserts behaviour, not wall-clock time (print figures in bench/).',
        },
        {
          selector: `CallExpression[callee.property.name=/^to/] > :matches(${NOW}, BinaryExpression:has(${NOW}))`,
          message: 'A test asserts behaviour, not wall-clock time (print figures in bench/).',
        },
        {
          selector: `BinaryExpression[operator=/^[<>]=?$/] > BinaryExpression[operator='-'] > ${NOW}`,
          message: 'A test asserts behaviour, not wall-clock time (print figures in bench/).',
        },
      ],
    },
  },
);
