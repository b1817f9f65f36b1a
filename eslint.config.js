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
