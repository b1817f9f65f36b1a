// Writes each CRD manifest of deploy/crds/ into the directory given as argument;
// hack/gen-manifests.sh bundles and runs it.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { crdManifests } from '../src/crds/manifest.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: gen-manifests <output dir>');
for (const [file, text] of Object.entries(crdManifests())) {
  writeFileSync(path.join(dir, file), text);
}
