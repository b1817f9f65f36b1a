// A tiny schema builder: each node carries both its OpenAPI v3 JSON (for the CRD) and, as a
// phantom type, the TypeScript type of the values it accepts, so the CRD and the types used by
// the controller and node agent come from one source and cannot drift (Infer<typeof x>).
// Every builder demands a description (kubectl explain) and every string/list a bound (CEL cost).

/** One CEL rule, as in the CRD's `x-kubernetes-validations`. */
export interface Validation {
  readonly rule: string;
  readonly message: string;
  /** Path, relative to the node the rule is on, that the error is reported against. */
  readonly fieldPath?: string;
}

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps this project emits. */
export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean';
  description?: string;
  format?: string;
  enum?: readonly string[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  default?: unknown;
  required?: string[];
  properties?: Record<string, JSONSchemaProps>;
  additionalProperties?: JSONSchemaProps;
  items?: JSONSchemaProps;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-validations'?: Validation[];
}

declare const phantom: unique symbol;

/** A schema node whose accepted values have TypeScript type T. */
export interface Schema<T> {
  readonly json: JSONSchemaProps;
  readonly [phantom]?: T;
}

/** The TypeScript type of the values a schema node accepts. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

interface Common {
  description: string;
  validations?: readonly Validation[];
}

function node<T>(json: JSONSchemaProps, o: Common): Schema<T> {
  const withDoc: JSONSchemaProps = { description: o.description, ...json };
  if (o.validations?.length) withDoc['x-kubernetes-validations'] = [...o.validations];
  return { json: withDoc };
}

export function str(
  o: Common & {
    maxLength: number;
    minLength?: number;
    pattern?: string;
    format?: 'date-time';
    default?: string;
  },
): Schema<string> {
  return node(
    {
      type: 'string',
      ...(o.format && { format: o.format }),
      ...(o.minLength !== undefined && { minLength: o.minLength }),
      maxLength: o.maxLength,
      ...(o.pattern !== undefined && { pattern: o.pattern }),
      ...(o.default !== undefined && { default: o.default }),
    },
    o,
  );
}

export function enumOf<const V extends readonly [string, ...string[]]>(
  values: V,
  o: Common & { default?: V[number] },
): Schema<V[number]> {
  return node(
    {
      type: 'string',
      enum: [...values],
      // Enums are strings too: bounded so CEL cost estimates stay small.
      maxLength: Math.max(...values.map((v) => v.length)),
      ...(o.default !== undefined && { default: o.default }),
    },
    o,
  );
}

const INT32_MAX = 2 ** 31 - 1;
const INT32_MIN = -(2 ** 31);

export function int(
  o: Common & { minimum?: number; maximum?: number; default?: number; format?: 'int32' | 'int64' },
): Schema<number> {
  const fitsInt32 =
    o.minimum !== undefined &&
    o.maximum !== undefined &&
    o.minimum >= INT32_MIN &&
    o.maximum <= INT32_MAX;
  return node(
    {
      type: 'integer',
      format: o.format ?? (fitsInt32 ? 'int32' : 'int64'),
      ...(o.minimum !== undefined && { minimum: o.minimum }),
      ...(o.maximum !== undefined && { maximum: o.maximum }),
      ...(o.default !== undefined && { default: o.default }),
    },
    o,
  );
}

export function bool(o: Common & { default?: boolean }): Schema<boolean> {
  return node({ type: 'boolean', ...(o.default !== undefined && { default: o.default }) }, o);
}

type ItemOf<S> = Infer<S>;

export function arr<S extends Schema<unknown>>(
  items: S,
  o: Common & { maxItems: number; minItems?: number; listType?: 'atomic' | 'set' },
): Schema<ItemOf<S>[]> {
  return node(
    {
      type: 'array',
      ...(o.minItems !== undefined && { minItems: o.minItems }),
      maxItems: o.maxItems,
      items: items.json,
      ...(o.listType && { 'x-kubernetes-list-type': o.listType }),
    },
    o,
  );
}

/** A list of objects keyed (and so made unique by the API server) by the given fields. */
export function mapList<S extends Schema<object>, K extends keyof Infer<S> & string>(
  items: S,
  keys: readonly [K, ...K[]],
  o: Common & { maxItems: number; minItems?: number },
): Schema<Infer<S>[]> {
  const required = items.json.required ?? [];
  for (const k of keys) {
    const prop = items.json.properties?.[k];
    if (!prop || (!required.includes(k) && prop.default === undefined)) {
      throw new Error(`list map key ${k} must be a required or defaulted property`);
    }
  }
  return node(
    {
      type: 'array',
      ...(o.minItems !== undefined && { minItems: o.minItems }),
      maxItems: o.maxItems,
      items: items.json,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': [...keys],
    },
    o,
  );
}

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type ObjOf<P extends Record<string, Schema<unknown>>, R extends keyof P> = Simplify<
  { [K in R]: Infer<P[K]> } & { [K in Exclude<keyof P, R>]?: Infer<P[K]> }
>;

export function obj<P extends Record<string, Schema<unknown>>, R extends keyof P & string = never>(
  properties: P,
  o: Common & { required?: readonly R[]; default?: Record<string, unknown> },
): Schema<ObjOf<P, R>> {
  const props: Record<string, JSONSchemaProps> = {};
  for (const [k, v] of Object.entries(properties)) props[k] = v.json;
  return node(
    {
      type: 'object',
      ...(o.required?.length && { required: [...o.required] }),
      properties: props,
      ...(o.default !== undefined && { default: o.default }),
    },
    o,
  );
}

/** An object with arbitrary keys and values of one schema (e.g. a label selector). */
export function record<S extends Schema<unknown>>(
  values: S,
  o: Common & { maxProperties: number },
): Schema<Record<string, Infer<S>>> {
  return node(
    { type: 'object', maxProperties: o.maxProperties, additionalProperties: values.json },
    o,
  );
}
