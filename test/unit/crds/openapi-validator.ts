// Validates objects against the OpenAPI part of the CRD schema the way the API server's
// structural validation does (ajv for the JSON Schema keywords, plus list-map key uniqueness);
// CEL rules are not evaluated here.
import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import { openApiSchema, type JSONSchemaProps } from '../../../src/crds/index.js';

function stripKubernetesKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripKubernetesKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (!k.startsWith('x-kubernetes-')) out[k] = stripKubernetesKeys(v);
  }
  return out;
}

export interface Violation {
  /** Field path in the API server's form, e.g. spec.containers[0].name. */
  path: string;
  message: string;
}

// '/spec/containers/0/name' -> 'spec.containers[0].name'
function toFieldPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((seg, i) => (/^\d+$/.test(seg) ? `[${seg}]` : i === 0 ? seg : `.${seg}`))
    .join('');
}

function duplicateKeys(schema: JSONSchemaProps, value: unknown, path: string, out: Violation[]) {
  if (Array.isArray(value) && schema.items) {
    const keys = schema['x-kubernetes-list-map-keys'];
    const seen = new Set<string>();
    value.forEach((item, i) => {
      const itemPath = `${path}[${i}]`;
      if (keys && item && typeof item === 'object') {
        const id = JSON.stringify(keys.map((k) => (item as Record<string, unknown>)[k]));
        if (seen.has(id)) out.push({ path: itemPath, message: 'Duplicate value' });
        seen.add(id);
      }
      duplicateKeys(schema.items!, item, itemPath, out);
    });
  } else if (value && typeof value === 'object' && schema.properties) {
    for (const [k, sub] of Object.entries(schema.properties)) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) duplicateKeys(sub, v, path ? `${path}.${k}` : k, out);
    }
  }
}

export function makeValidator() {
  const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true });
  addFormats.default(ajv);
  const schema = openApiSchema();
  const validate = ajv.compile(stripKubernetesKeys(schema) as object);
  /** Applies defaults to `obj` in place (as the API server does) and returns the violations. */
  return (obj: unknown): Violation[] => {
    const out: Violation[] = [];
    if (!validate(obj)) {
      for (const e of validate.errors as ErrorObject[]) {
        const missing = e.keyword === 'required' ? `/${String(e.params.missingProperty)}` : '';
        out.push({ path: toFieldPath(e.instancePath + missing), message: e.message ?? e.keyword });
      }
    }
    duplicateKeys(schema, obj, '', out);
    return out;
  };
}
