// Prints the KataSandbox CRD manifest; hack/gen-manifests.sh bundles and runs it.
import { renderCrdYaml } from '../src/crds/manifest.js';

process.stdout.write(renderCrdYaml());
