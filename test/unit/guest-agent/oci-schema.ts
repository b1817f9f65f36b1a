// Loads the OCI runtime-spec v1.1.0 JSON schema (draft-04) from where the project keeps it, not a
// copy: OCI_SCHEMA_DIR, or ../shared/data/oci-runtime-spec-v1.1.0-schema beside the repo.
import AjvDraft04 from 'ajv-draft-04';
import type { ValidateFunction } from 'ajv';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export function schemaDir(): string {
  return path.resolve(
    REPO_ROOT,
    process.env.OCI_SCHEMA_DIR ?? '../shared/data/oci-runtime-spec-v1.1.0-schema',
  );
}

/** A validator for config.json; the schema's relative $refs ("defs.json#…") resolve by file name. */
export function configValidator(): ValidateFunction {
  const dir = schemaDir();
  // A CommonJS module: under NodeNext its default import is module.exports, whose .default is Ajv.
  const ajv = new AjvDraft04.default({ allErrors: true, strict: false });
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    if (file === 'config-schema.json') continue;
    ajv.addSchema(JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as object, file);
  }
  const config = JSON.parse(readFileSync(path.join(dir, 'config-schema.json'), 'utf8')) as object;
  return ajv.compile(config);
}
