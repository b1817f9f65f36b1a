export * from './constants.js';
export * from './katasandbox.js';
export * from './sandbox-facts.js';
export * from './katawarmpool.js';
export { buildCrd, buildWarmPoolCrd, openApiSchema, warmPoolOpenApiSchema } from './crd.js';
export { crdManifests, renderCrdYaml } from './manifest.js';
export type { Infer, JSONSchemaProps, Schema, Validation } from './schema.js';
export * from './warm-shape.js';
