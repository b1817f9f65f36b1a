import { describe, expect, it } from '@jest/globals';
import type { KataSandbox } from '../../../src/crds/index.js';
import { invalidSandboxes, validSandbox } from '../../fixtures/invalid-sandboxes.js';
import { makeValidator } from './openapi-validator.js';

const validate = makeValidator();

function sandbox(spec: KataSandbox['spec']): KataSandbox {
  return { ...validSandbox(), spec };
}

const valid: [string, KataSandbox][] = [
  ['the minimal sandbox', validSandbox()],
  [
    'the DESIGN §3 example',
    sandbox({
      nodeName: 'local',
      nodeSelector: { 'kubernetes.io/arch': 'amd64' },
      hostname: 'web',
      terminationGracePeriodSeconds: 30,
      restartPolicy: 'Never',
      vm: { vcpus: 1, memoryMiB: 512, accelerator: 'auto', kernel: 'default' },
      network: { mode: 'none' },
      dns: { nameservers: ['10.0.0.10', 'fd00::a'], searches: ['svc.cluster.local'] },
      volumes: [{ name: 'data', hostPath: { path: '/srv/data', readOnly: true } }],
      containers: [
        {
          name: 'main',
          image: 'busybox:1.36',
          imagePullPolicy: 'IfNotPresent',
          command: ['/bin/sh'],
          args: ['-c', 'echo hi'],
          env: [{ name: 'GREETING', value: 'hi' }],
          workingDir: '/',
          user: '1000:1000',
          primaryGroup: 1000,
          supplementalGroups: [10],
          tty: false,
          volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }],
          devices: [{ hostPath: '/dev/loop3', containerPath: '/dev/xvdb' }],
        },
      ],
      imagePullSecrets: [{ name: 'regcred' }],
    }),
  ],
  [
    'a hostPath rootfs, cni networking and the largest VM',
    sandbox({
      vm: { vcpus: 32, memoryMiB: 65536, accelerator: 'tcg' },
      network: { mode: 'cni' },
      containers: [{ name: 'a', rootfs: { hostPath: { path: '/var/lib/kata-rootfs/busybox' } } }],
    }),
  ],
  [
    'a block rootfs, a netns and the smallest VM',
    sandbox({
      vm: { vcpus: 1, memoryMiB: 512, accelerator: 'kvm' },
      network: { mode: 'netns', netnsPath: '/var/run/netns/x' },
      containers: [
        {
          name: 'a',
          rootfs: { block: { path: '/var/lib/kata-images/x.xfs', fsType: 'xfs', readOnly: true } },
        },
      ],
    }),
  ],
  [
    'several containers, 32-bit ids and unusual env names',
    sandbox({
      hostname: 'a'.repeat(63),
      restartPolicy: 'OnFailure',
      containers: [
        { name: 'a', image: 'x', user: '4294967295:0', supplementalGroups: [0, 4294967295] },
        { name: 'b-2', image: 'reg.io/x/y@sha256:abc', user: '0', env: [{ name: '_a.b-c' }] },
      ],
    }),
  ],
  [
    'a container with a terminal and no stdin (as a Pod may)',
    sandbox({ containers: [{ name: 'a', image: 'x', tty: true }] }),
  ],
  [
    'paths containing dots that are not .. segments',
    sandbox({
      volumes: [{ name: 'v', hostPath: { path: '/srv/..data/.x/...' } }],
      containers: [
        {
          name: 'a',
          image: 'x',
          workingDir: '/a..b',
          volumeMounts: [{ name: 'v', mountPath: '/m' }],
        },
      ],
    }),
  ],
];

describe('valid KataSandboxes', () => {
  it.each(valid)('accepts %s', (_name, obj) => {
    expect(validate(structuredClone(obj))).toEqual([]);
  });

  it('fills in the defaults', () => {
    const obj = validSandbox();
    obj.spec.volumes = [{ name: 'v', hostPath: { path: '/srv' } }];
    obj.spec.containers = [
      {
        name: 'main',
        rootfs: { block: { path: '/x.img' } },
        volumeMounts: [{ name: 'v', mountPath: '/v' }],
      },
    ];
    expect(validate(obj)).toEqual([]);
    expect(obj.spec).toEqual({
      terminationGracePeriodSeconds: 30,
      restartPolicy: 'Never',
      vm: { vcpus: 1, memoryMiB: 512, accelerator: 'auto', kernel: 'default' },
      network: { mode: 'none' },
      volumes: [{ name: 'v', hostPath: { path: '/srv', readOnly: false } }],
      containers: [
        {
          name: 'main',
          rootfs: { block: { path: '/x.img', fsType: 'ext4', readOnly: false } },
          tty: false,
          volumeMounts: [{ name: 'v', mountPath: '/v', readOnly: false }],
        },
      ],
    });
  });

  it('accepts a full status in the shapes the controller and node agent write', () => {
    const obj: KataSandbox = {
      ...validSandbox(),
      status: {
        phase: 'Running',
        reason: '',
        message: '',
        nodeName: 'local',
        observedGeneration: 1,
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            observedGeneration: 1,
            lastTransitionTime: '2025-01-01T00:00:00Z',
            reason: 'ContainersRunning',
            message: '',
          },
        ],
        vm: { pid: 1234, accelerator: 'tcg', bootMillis: 5200, startedAt: '2025-01-01T00:00:00Z' },
        network: {
          interfaces: [
            { name: 'eth0', mac: '02:00:00:00:00:01', addresses: ['10.0.0.2/24'], mtu: 1500 },
          ],
          routes: [{ dest: 'default', gateway: '10.0.0.1', device: 'eth0' }],
        },
        containers: [
          {
            name: 'main',
            state: 'Exited',
            exitCode: 0,
            restartCount: 0,
            finishedAt: '2025-01-01T00:00:01Z',
          },
        ],
      },
    };
    expect(validate(obj)).toEqual([]);
  });

  it('refuses a malformed status', () => {
    const obj = {
      ...validSandbox(),
      status: {
        phase: 'Booting',
        conditions: [
          { type: 'Ready', status: 'Yes', lastTransitionTime: 'now', reason: 'x y', message: '' },
        ],
        containers: [{ name: 'main', state: 'Stopped' }],
      },
    };
    expect(
      validate(obj)
        .map((v) => v.path)
        .sort(),
    ).toEqual([
      'status.conditions[0].lastTransitionTime',
      'status.conditions[0].reason',
      'status.conditions[0].status',
      'status.containers[0].state',
      'status.phase',
    ]);
  });
});

describe('invalid KataSandboxes (test/fixtures/invalid-sandboxes.ts)', () => {
  it('has at least 25 cases, each with a unique object name', () => {
    expect(invalidSandboxes.length).toBeGreaterThanOrEqual(25);
    const names = invalidSandboxes.map((c) => (c.object.metadata as { name: string }).name);
    expect(new Set(names).size).toBe(names.length);
  });

  const schemaCases = invalidSandboxes.filter((c) => c.by === 'schema');
  it.each(schemaCases.map((c) => [c.name, c] as const))('schema refuses: %s', (_name, c) => {
    const violations = validate(structuredClone(c.object));
    expect(violations.map((v) => v.path)).toContain(c.field);
  });

  // CEL is not evaluated here: these must pass the OpenAPI schema, so the CEL rule is the only
  // thing that can refuse them (the integration tests check that it does).
  const celCases = invalidSandboxes.filter((c) => c.by === 'cel');
  it.each(celCases.map((c) => [c.name, c] as const))('only CEL refuses: %s', (_name, c) => {
    expect(validate(structuredClone(c.object))).toEqual([]);
  });
});
