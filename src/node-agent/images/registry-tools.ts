// The image cache's two tools, skopeo and umoci, run with argv built in tool-args.ts: a manifest
// inspected, one digest copied into an OCI layout, a layout unpacked; each with its deadline,
// cancellation, and the credential (when any) in a 0600 auth file that exists only for the call.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCommandOk } from '../../common/run-command.js';
import type { ImageReference } from './reference.js';
import { authFileContent, type RegistryCredential } from './registry-auth.js';
import {
  type RegistryAccess,
  isInsecureRegistry,
  skopeoCopyArgs,
  skopeoInspectRawArgs,
  umociUnpackArgs,
} from './tool-args.js';

/** Everything the tools ran, counted (tests and benchmarks read it). */
export interface ToolCounts {
  inspect: number;
  copy: number;
  unpack: number;
}

export interface RegistryToolsOptions {
  /** skopeo's trust policy file and the tools' TMPDIR, both inside the store. */
  policyFile: string;
  tmpDir: string;
  insecureRegistries?: readonly string[] | undefined;
  skopeoBinary?: string | undefined;
  umociBinary?: string | undefined;
  inspectTimeoutMs?: number | undefined;
  copyTimeoutMs?: number | undefined;
  unpackTimeoutMs?: number | undefined;
}

export const LAYOUT_TAG = 'image';
const SKOPEO_BINARY = 'skopeo';
const UMOCI_BINARY = 'umoci';

export class RegistryTools {
  readonly runs: ToolCounts = { inspect: 0, copy: 0, unpack: 0 };

  constructor(private readonly opts: RegistryToolsOptions) {}

  /** The raw manifest (or index) the registry serves for `ref`. */
  async inspectRaw(
    ref: ImageReference,
    cred: RegistryCredential | undefined,
    signal: AbortSignal,
  ): Promise<Buffer> {
    return this.withAuth(ref, cred, async (authFile) => {
      this.runs.inspect++;
      const out = await this.skopeo(
        skopeoInspectRawArgs(ref, this.access(ref, authFile)),
        this.opts.inspectTimeoutMs ?? 60_000,
        signal,
      );
      return out.stdout;
    });
  }

  /** Copies exactly `digest` from `ref`'s repository into an OCI layout (every blob verified). */
  async copy(
    ref: ImageReference,
    digest: string,
    layout: string,
    cred: RegistryCredential | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    await this.withAuth(ref, cred, async (authFile) => {
      this.runs.copy++;
      await this.skopeo(
        skopeoCopyArgs(ref, digest, layout, LAYOUT_TAG, this.access(ref, authFile)),
        this.opts.copyTimeoutMs ?? 15 * 60_000,
        signal,
      );
    });
  }

  /** Unpacks the layout's image into a bundle (rootfs + config.json). */
  async unpack(layout: string, bundle: string, signal: AbortSignal): Promise<void> {
    this.runs.unpack++;
    await runCommandOk(
      [this.opts.umociBinary ?? UMOCI_BINARY, ...umociUnpackArgs(layout, LAYOUT_TAG, bundle)],
      { timeoutMs: this.opts.unpackTimeoutMs ?? 10 * 60_000, signal },
    );
  }

  private access(ref: ImageReference, authFile?: string): RegistryAccess {
    return {
      insecure: isInsecureRegistry(ref.registry, this.opts.insecureRegistries ?? []),
      policyFile: this.opts.policyFile,
      tmpDir: this.opts.tmpDir,
      ...(authFile && { authFile }),
    };
  }

  /** Runs `fn` with an auth file for `cred` (0600, in a private temp dir, removed after). */
  private async withAuth<T>(
    ref: ImageReference,
    cred: RegistryCredential | undefined,
    fn: (authFile: string | undefined) => Promise<T>,
  ): Promise<T> {
    if (!cred) return fn(undefined);
    const dir = await mkdtemp(path.join(this.opts.tmpDir, 'auth-'));
    const file = path.join(dir, 'auth.json');
    try {
      await writeFile(file, authFileContent(ref, cred), { mode: 0o600 });
      return await fn(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private skopeo(args: string[], timeoutMs: number, signal: AbortSignal) {
    return runCommandOk([this.opts.skopeoBinary ?? SKOPEO_BINARY, ...args], {
      timeoutMs,
      signal,
      env: { ...process.env, TMPDIR: this.opts.tmpDir },
    });
  }
}
