// Five layers, each a Jest project: unit (pure logic, fakes allowed), integration (a real
// kube-apiserver + etcd), e2e (real QEMU VMs), peers (our agents against the real Kata 1.x client
// and agent, built by hand outside the repository: test/peers/peer-binaries.ts), cluster (the installed product on a real
// single-node cluster, hack/cluster.sh). `make test` runs them all; TEST_LAYERS narrows it.
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testEnvironment: 'node',
};

// No passWithNoTests: a run that finds no test fails, and hack/run-tests.sh fails a whole run in
// which any layer found none.
export default {
  // testTimeout is global in Jest (a project's own is ignored); e2e tests set longer ones per test.
  testTimeout: 120_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      // One real control plane per run, shared by every file (each file uses its own namespace).
      globalSetup: '<rootDir>/test/integration/global-setup.mjs',
      globalTeardown: '<rootDir>/test/integration/global-teardown.mjs',
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
      // The node agent's e2e files run the controller and node agent against the same plane.
      globalSetup: '<rootDir>/test/integration/global-setup.mjs',
      globalTeardown: '<rootDir>/test/integration/global-teardown.mjs',
    },
    // The soak's short form (test/soak/, `make soak` is the long one): the e2e stack, with faults.
    {
      ...common,
      displayName: 'soak',
      testMatch: ['<rootDir>/test/soak/**/*.test.ts'],
      globalSetup: '<rootDir>/test/integration/global-setup.mjs',
      globalTeardown: '<rootDir>/test/integration/global-teardown.mjs',
    },
    // Real QEMU VMs and the real Kata 1.x peers (client and agent); the node agent's files run
    // the controller and node agent against the shared plane, as e2e does.
    {
      ...common,
      displayName: 'peers',
      testMatch: ['<rootDir>/test/peers/**/*.test.ts'],
      globalSetup: '<rootDir>/test/integration/global-setup.mjs',
      globalTeardown: '<rootDir>/test/integration/global-teardown.mjs',
    },
    // Its own cluster (hack/cluster.sh up/down inside the file), no shared plane.
    { ...common, displayName: 'cluster', testMatch: ['<rootDir>/test/cluster/**/*.test.ts'] },
  ],
};
