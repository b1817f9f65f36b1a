export * from './constants.js';
export * from './katasandbox.js';
export * from './sandbox-facts.js';
export { buildCrd, openApiSchema } from './crd.js';
export { renderCrdYaml } from './manifest.js';
export type { Infer, JSONSchemaProps, Schema, Validation } from './schema.js';
