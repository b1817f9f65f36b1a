// The one sandbox of this VM: hostname, DNS, and its storages (the 9p share at
// /run/kata-containers/shared/containers/).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CreateSandboxRequest } from '../../generated/agent.js';
import { CONTAINER_RESOLV_CONF } from '../storage.js';
import type { Logger } from '../../observability/logger.js';
import type { ContainerManager } from './container-manager.js';
import { validateId } from './path-guard.js';
import { alreadyExists, invalidArgument } from './status-error.js';
import { validateStorage, type StorageMounter } from './storage-mounter.js';

export const SANDBOX_OWNER = 'sandbox';
const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/;
const DNS_LINE_RE = /^[\x20-\x7e\t]{1,1024}$/;

export interface SandboxOptions {
  mounter: StorageMounter;
  containers: ContainerManager;
  logger: Logger;
  /** Written to set the hostname (the agent is not in a UTS namespace of its own). */
  hostnameFile?: string;
  resolvConf?: string;
  /** The copy containers bind (under /run/kata-containers/, where bind sources must be). */
  containerResolvConf?: string;
}

async function writeText(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text, { mode: 0o644 });
}

export function validateSandboxRequest(req: CreateSandboxRequest): void {
  if (req.hostname !== '' && !HOSTNAME_RE.test(req.hostname)) {
    throw invalidArgument(`hostname ${JSON.stringify(req.hostname)} is not a valid host name`);
  }
  req.dns.forEach((line, i) => {
    if (!DNS_LINE_RE.test(line))
      throw invalidArgument(`dns[${i}] ${JSON.stringify(line)} is not a resolv.conf line`);
  });
  if (req.sandboxId !== '') validateId('sandbox_id', req.sandboxId);
  req.storages.forEach((s, i) => validateStorage(s, `storages[${i}]`));
}

export class Sandbox {
  private created = false;
  private creating = false;
  id = '';

  constructor(private readonly opts: SandboxOptions) {}

  get exists(): boolean {
    return this.created;
  }

  async create(req: CreateSandboxRequest): Promise<void> {
    validateSandboxRequest(req);
    if (this.created || this.creating) {
      throw alreadyExists(`sandbox ${JSON.stringify(this.id)} already exists`);
    }
    this.creating = true;
    try {
      if (req.hostname) {
        await writeFile(this.opts.hostnameFile ?? '/proc/sys/kernel/hostname', req.hostname);
      }
      const text = req.dns.length > 0 ? `${req.dns.join('\n')}\n` : '';
      if (text) await writeText(this.opts.resolvConf ?? '/etc/resolv.conf', text);
      // Containers always bind this copy, so it exists even without dns.
      await writeText(this.opts.containerResolvConf ?? CONTAINER_RESOLV_CONF, text);
      for (const s of req.storages) await this.opts.mounter.mount(s, SANDBOX_OWNER);
      this.created = true;
      this.id = req.sandboxId;
      this.opts.logger.info(
        { sandboxId: req.sandboxId, hostname: req.hostname },
        'sandbox created',
      );
    } catch (err) {
      await this.opts.mounter.unmountOwner(SANDBOX_OWNER);
      throw err;
    } finally {
      this.creating = false;
    }
  }

  /** Every container, then every mount; reports what could not be undone. */
  async destroy(): Promise<Error[]> {
    const errors = await this.opts.containers.removeAll();
    errors.push(...(await this.opts.mounter.unmountAll()));
    this.created = false;
    this.opts.logger.info({ sandboxId: this.id, errors: errors.length }, 'sandbox destroyed');
    this.id = '';
    return errors;
  }
}
