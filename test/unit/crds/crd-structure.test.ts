import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { parse } from 'yaml';
import {
  buildCrd,
  CRD_GROUP,
  CRD_VERSION,
  KIND,
  openApiSchema,
  PLURAL,
  renderCrdYaml,
  type JSONSchemaProps,
} from '../../../src/crds/index.js';

const MANIFEST = 'deploy/crds/kata.sandbox.io_katasandboxes.yaml';

function walk(
  schema: JSONSchemaProps,
  path: string,
  visit: (s: JSONSchemaProps, path: string) => void,
): void {
  visit(schema, path);
  for (const [k, v] of Object.entries(schema.properties ?? {})) walk(v, `${path}.${k}`, visit);
  if (schema.items) walk(schema.items, `${path}[]`, visit);
  if (schema.additionalProperties) walk(schema.additionalProperties, `${path}{}`, visit);
}

function nodes(): [string, JSONSchemaProps][] {
  const all: [string, JSONSchemaProps][] = [];
  walk(openApiSchema(), '', (s, p) => all.push([p, s]));
  return all;
}

function at(path: string): JSONSchemaProps {
  let s: JSONSchemaProps | undefined = openApiSchema();
  for (const part of path.split('.')) {
    s = part.endsWith('[]') ? s?.properties?.[part.slice(0, -2)]?.items : s?.properties?.[part];
  }
  if (!s) throw new Error(`no schema at ${path}`);
  return s;
}

describe('KataSandbox CRD manifest', () => {
  it('on disk equals a fresh generation (run `make manifests`)', () => {
    expect(readFileSync(MANIFEST, 'utf8')).toBe(renderCrdYaml());
  });

  it('parses back to the built CRD', () => {
    expect(parse(renderCrdYaml())).toEqual(buildCrd());
  });

  it('has the names, scope, version, subresource and printer columns (wide ones at priority 1)', () => {
    const crd = buildCrd();
    expect(crd.metadata.name).toBe(`${PLURAL}.${CRD_GROUP}`);
    expect(crd.spec.names).toEqual({
      kind: KIND,
      listKind: 'KataSandboxList',
      plural: 'katasandboxes',
      singular: 'katasandbox',
      shortNames: ['ksb'],
      categories: ['all', 'kata'],
    });
    expect(crd.spec.scope).toBe('Namespaced');
    const [v] = crd.spec.versions;
    expect(crd.spec.versions).toHaveLength(1);
    expect(v).toMatchObject({ name: CRD_VERSION, served: true, storage: true });
    expect(v?.subresources).toEqual({ status: {} });
    expect(
      v?.additionalPrinterColumns.map((c) => [
        c.name,
        c.jsonPath,
        (c as { priority?: number }).priority ?? 0,
      ]),
    ).toEqual([
      ['Phase', '.status.phase', 0],
      ['Reason', '.status.reason', 0],
      ['Node', '.status.nodeName', 0],
      ['Ready', '.status.conditions[?(@.type=="Ready")].status', 0],
      ['Age', '.metadata.creationTimestamp', 0],
      ['vCPUs', '.spec.vm.vcpus', 1],
      ['Memory(MiB)', '.spec.vm.memoryMiB', 1],
      ['IP', '.status.network.interfaces[0].addresses[0]', 1],
      ['Boot(ms)', '.status.vm.bootMillis', 1],
      ['Restarts', '.status.containers[*].restartCount', 1],
    ]);
  });
});

describe('KataSandbox schema structure', () => {
  it('describes every field (kubectl explain)', () => {
    // metadata is described by the API server itself; a CRD may only say `type: object` there.
    const missing = nodes().filter(([p, s]) => p !== '.metadata' && !s.description?.trim());
    expect(missing.map(([p]) => p)).toEqual([]);
  });

  it('bounds every string and list (CEL cost) and every map', () => {
    const all = nodes();
    const unbounded = all.filter(
      ([p, s]) =>
        (s.type === 'string' &&
          s.maxLength === undefined &&
          p !== '.apiVersion' &&
          p !== '.kind') ||
        (s.type === 'array' && s.maxItems === undefined) ||
        (s.type === 'object' && s.additionalProperties && s.maxProperties === undefined),
    );
    expect(unbounded.map(([p]) => p)).toEqual([]);
  });

  it('types every node and gives every object its properties', () => {
    for (const [p, s] of nodes()) {
      expect([p, s.type]).toEqual([p, expect.any(String)]);
      if (s.type === 'object' && p !== '.metadata') {
        expect([p, Boolean(s.properties ?? s.additionalProperties)]).toEqual([p, true]);
      }
    }
  });

  it('makes list-map keys required and every required field a declared property', () => {
    for (const [p, s] of nodes()) {
      for (const k of s['x-kubernetes-list-map-keys'] ?? []) {
        expect([p, s.items?.required?.includes(k)]).toEqual([p, true]);
      }
      for (const r of s.required ?? []) expect([p, r in (s.properties ?? {})]).toEqual([p, true]);
    }
  });

  it('keys the map lists as DESIGN §3 says', () => {
    expect(at('spec.containers')['x-kubernetes-list-map-keys']).toEqual(['name']);
    expect(at('spec.volumes')['x-kubernetes-list-map-keys']).toEqual(['name']);
    expect(at('status.conditions')['x-kubernetes-list-map-keys']).toEqual(['type']);
    expect(at('status.containers')['x-kubernetes-list-map-keys']).toEqual(['name']);
    expect(at('spec.containers')).toMatchObject({ minItems: 1, 'x-kubernetes-list-type': 'map' });
  });

  it('requires spec and containers, and the standard condition fields', () => {
    expect(openApiSchema().required).toEqual(['spec']);
    expect(at('spec').required).toEqual(['containers']);
    expect(at('spec.containers[]').required).toEqual(['name']);
    expect(at('status.conditions[]').required).toEqual([
      'type',
      'status',
      'lastTransitionTime',
      'reason',
      'message',
    ]);
    expect(at('status.conditions[].status').enum).toEqual(['True', 'False', 'Unknown']);
    expect(at('status.conditions[].lastTransitionTime').format).toBe('date-time');
  });

  it('declares the defaults', () => {
    const defaults = Object.fromEntries(
      nodes()
        .filter(([, s]) => s.default !== undefined)
        .map(([p, s]) => [p, s.default]),
    );
    expect(defaults).toEqual({
      '.spec.terminationGracePeriodSeconds': 30,
      '.spec.restartPolicy': 'Never',
      '.spec.vm': {},
      '.spec.vm.vcpus': 1,
      '.spec.vm.memoryMiB': 512,
      '.spec.vm.accelerator': 'auto',
      '.spec.vm.kernel': 'default',
      '.spec.network': {},
      '.spec.network.mode': 'none',
      '.spec.volumes[].hostPath.readOnly': false,
      '.spec.containers[].rootfs.block.fsType': 'ext4',
      '.spec.containers[].rootfs.block.readOnly': false,
      '.spec.containers[].tty': false,
      '.spec.containers[].volumeMounts[].readOnly': false,
    });
  });

  it('has the status phase enum and makes the whole spec immutable', () => {
    expect(at('status.phase').enum).toEqual([
      'Pending',
      'Scheduled',
      'Creating',
      'Running',
      'Succeeded',
      'Failed',
      'Terminating',
    ]);
    expect(at('spec')['x-kubernetes-validations']).toContainEqual(
      expect.objectContaining({ rule: 'self == oldSelf' }),
    );
  });
});

describe('CEL rules', () => {
  const rules = nodes().flatMap(([p, s]) =>
    (s['x-kubernetes-validations'] ?? []).map((v) => ({ p, s, ...v })),
  );

  it('exist for the cross-field and path rules', () => {
    expect(rules.length).toBeGreaterThanOrEqual(12);
  });

  it('are well-formed: balanced brackets and quotes, a message, a fieldPath that exists', () => {
    for (const { p, s, rule, message, fieldPath } of rules) {
      expect([p, message.length > 0]).toEqual([p, true]);
      let depth = 0;
      const unquoted = rule.replace(/'[^']*'/g, "''");
      expect([p, rule, (rule.match(/'/g) ?? []).length % 2]).toEqual([p, rule, 0]);
      for (const ch of unquoted) {
        depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
        expect(depth).toBeGreaterThanOrEqual(0);
      }
      expect([p, rule, depth]).toEqual([p, rule, 0]);
      if (fieldPath) {
        expect(fieldPath).toMatch(/^\.[A-Za-z]+$/);
        expect([p, fieldPath, fieldPath.slice(1) in (s.properties ?? {})]).toEqual([
          p,
          fieldPath,
          true,
        ]);
      }
    }
  });

  it('only touch string fields that have a maxLength', () => {
    // Every string in the schema is bounded (checked above); this guards the rule-bearing ones
    // explicitly, since an unbounded string makes the API server reject the CRD.
    for (const { p, s } of rules) {
      if (s.type === 'string') expect([p, s.maxLength]).toEqual([p, expect.any(Number)]);
    }
  });
});
