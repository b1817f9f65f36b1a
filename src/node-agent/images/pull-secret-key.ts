// The node agent's X25519 key pair for pull-secret projections (src/kube/pull-secret-projection.ts):
// kept in <stateDir>/pull-secret-key.pem (0600, written atomically), reused across restarts so
// existing projections stay readable, made anew when missing or unreadable (the controller then
// re-seals every projection of this node for the new key, seen on the Lease).
import { chmod, mkdir, open, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  encodePublicKey,
  generateX25519KeyPair,
  keyPairFromPem,
  privateKeyToPem,
  type X25519KeyPair,
} from '../../crypto/sealed-box.js';
import { nodeKeyOf, type NodeKey } from '../../kube/pull-secret-projection.js';
import type { Logger } from '../../observability/logger.js';

export const NODE_KEY_FILE = 'pull-secret-key.pem';

export interface LoadedNodeKey {
  keys: X25519KeyPair;
  /** The public half as published on the Lease. */
  published: NodeKey;
  /** Whether it was made now (none, or an unreadable one, was on disk). */
  created: boolean;
}

async function writePrivate(file: string, pem: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(pem);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

export async function loadOrCreateNodeKey(stateDir: string, log?: Logger): Promise<LoadedNodeKey> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, NODE_KEY_FILE);
  let keys: X25519KeyPair | undefined;
  try {
    keys = keyPairFromPem(await readFile(file, 'utf8'));
    // Readable by its owner only, whatever an operator did to it.
    if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      log?.warn({ err, file }, 'pull-secret key unreadable: making a new one');
    }
  }
  const created = keys === undefined;
  if (!keys) {
    keys = generateX25519KeyPair();
    await writePrivate(file, privateKeyToPem(keys.privateKey));
  }
  return { keys, published: nodeKeyOf(keys.publicKey, encodePublicKey(keys.publicKey)), created };
}
