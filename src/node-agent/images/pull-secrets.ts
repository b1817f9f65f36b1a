// A sandbox's imagePullSecrets, as the node agent gets them: never from the sandbox's namespace
// (it may not read tenants' Secrets) but from the projection the controller writes for this
// sandbox on this node, kata-system/kata-pull-<uid>, sealed to this node's key
// (src/kube/pull-secret-projection.ts). Until a usable projection exists the pull waits, saying
// why; references the controller could not use come back as problems, each naming its field (the
// runtime turns them into FailedToRetrieveImagePullSecret Events, and the pull goes on without
// them, as kubelet does).
import type { V1Secret } from '@kubernetes/client-node';
import { sleep } from '../../common/sleep.js';
import { callApi, isNotFound, type KubeClients } from '../../kube/kube-client.js';
import {
  openProjection,
  PROJECTION_FINGERPRINT_ANNOTATION,
  PROJECTION_NAMESPACE,
  PROJECTION_NODE_LABEL,
  PROJECTION_UID_LABEL,
  projectionName,
  ProjectionError,
  type ProjectionPayload,
  type ProjectionTarget,
} from '../../kube/pull-secret-projection.js';
import type { X25519KeyPair } from '../../crypto/sealed-box.js';
import type { Logger } from '../../observability/logger.js';
import { type PullSecret, withUsableRegistryKeys } from './registry-auth.js';

export interface PullSecretsRead {
  secrets: PullSecret[];
  /** One line per Secret that could not be used, naming its field. */
  problems: string[];
}

/** Why a pull waits: `refused` when only a change of setup or key can help (an Event says so). */
export interface PullSecretsWait {
  message: string;
  refused: boolean;
}

export type ProjectionVerdict = { payload: ProjectionPayload } | { wait: PullSecretsWait };

/** This node's key pair and fingerprint, or why this node agent may not open projections. */
export type NodeKeys = { keys: X25519KeyPair; fingerprint: string } | { refused: string };

/** What to do with what was read for `target` (undefined: no projection yet). Pure. */
export function judgeProjection(
  secret: V1Secret | undefined,
  target: ProjectionTarget,
  node: NodeKeys,
): ProjectionVerdict {
  const where = `Secret ${PROJECTION_NAMESPACE}/${projectionName(target.uid)}`;
  if ('refused' in node) {
    return {
      wait: {
        message: `imagePullSecrets cannot be used on this node: ${node.refused}`,
        refused: true,
      },
    };
  }
  if (!secret) {
    return {
      wait: {
        message: `waiting for the controller to hand over the imagePullSecrets (${where})`,
        refused: false,
      },
    };
  }
  const labels = secret.metadata?.labels ?? {};
  const forNode = labels[PROJECTION_NODE_LABEL];
  if (forNode !== target.node || labels[PROJECTION_UID_LABEL] !== target.uid) {
    return {
      wait: {
        message: `${where} is for node ${JSON.stringify(forNode ?? '')}, not this one: waiting for the controller to re-project it`,
        refused: false,
      },
    };
  }
  const sealedFor = secret.metadata?.annotations?.[PROJECTION_FINGERPRINT_ANNOTATION] ?? '';
  if (sealedFor !== node.fingerprint) {
    return {
      wait: {
        message: `${where} is sealed for key ${sealedFor || '(none)'}, this node's key is ${node.fingerprint}: waiting for the controller to re-seal it`,
        refused: false,
      },
    };
  }
  try {
    return { payload: openProjection(secret, target, node.keys) };
  } catch (err) {
    if (!(err instanceof ProjectionError) && !(err instanceof SyntaxError)) throw err;
    return { wait: { message: `${where} refused: ${err.message}`, refused: true } };
  }
}

/** Registry keys over the matcher's limits are dropped here, each reported like a bad Secret. */
export function usableKeys(payload: ProjectionPayload): PullSecretsRead {
  const out: PullSecretsRead = { secrets: [], problems: [...payload.problems] };
  for (const secret of payload.secrets) {
    const usable = withUsableRegistryKeys('spec.imagePullSecrets', secret);
    out.problems.push(...usable.problems);
    out.secrets.push(usable.secret);
  }
  return out;
}

export interface ProjectedPullSecretsOptions {
  clients: Pick<KubeClients, 'core'>;
  nodeName: string;
  node: NodeKeys;
  /** Polling while there is no usable projection: first wait, doubling up to max. */
  pollMs?: { initial: number; max: number };
  logger?: Logger;
}

export interface PullSecretsRequest {
  uid: string;
  signal: AbortSignal;
  onWaiting: (wait: PullSecretsWait) => void;
}

export class ProjectedPullSecrets {
  constructor(private readonly opts: ProjectedPullSecretsOptions) {}

  private async fetch(uid: string, signal: AbortSignal): Promise<V1Secret | undefined> {
    const name = projectionName(uid);
    try {
      return await callApi(
        `get Secret ${PROJECTION_NAMESPACE}/${name}`,
        () =>
          this.opts.clients.core.readNamespacedSecret({ namespace: PROJECTION_NAMESPACE, name }),
        { signal, timeoutMs: 10_000 },
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** The sandbox's usable Secrets and problems; waits (until `signal`) for a usable projection. */
  async read(req: PullSecretsRequest): Promise<PullSecretsRead> {
    const poll = this.opts.pollMs ?? { initial: 500, max: 10_000 };
    const target = { node: this.opts.nodeName, uid: req.uid };
    let delay = poll.initial;
    for (;;) {
      req.signal.throwIfAborted();
      let verdict: ProjectionVerdict;
      try {
        const secret =
          'refused' in this.opts.node ? undefined : await this.fetch(req.uid, req.signal);
        verdict = judgeProjection(secret, target, this.opts.node);
      } catch (err) {
        if (req.signal.aborted) throw err;
        verdict = {
          wait: { message: `reading imagePullSecrets: ${(err as Error).message}`, refused: false },
        };
      }
      if ('payload' in verdict) return usableKeys(verdict.payload);
      this.opts.logger?.debug(
        { uid: req.uid, why: verdict.wait.message },
        'image pull waits for pull secrets',
      );
      req.onWaiting(verdict.wait);
      await sleep(delay, req.signal);
      delay = Math.min(poll.max, delay * 2);
    }
  }
}
