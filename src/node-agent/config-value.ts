// One node agent setting's value, checked and converted from what a flag, an environment variable
// or the config file gave. Pure.
import { checkCgroupParent } from './cgroups/cgroup-hierarchies.js';
import { isAllowedRegistryEntry } from './images/registry-allow.js';

export type SettingKind =
  | 'string'
  | 'int'
  | 'bool'
  | 'list'
  | 'hosts'
  | 'registries'
  | 'accel'
  | 'launch'
  | 'cgroupParent'
  | 'machine';

const HOST_PORT = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$/;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** One setting's raw value (flag, env or config file) as its kind, or a ConfigError naming `where`. */
export function convertSetting(
  o: { kind: SettingKind; emptyOk?: boolean },
  raw: unknown,
  where: string,
): unknown {
  const bad = (what: string): ConfigError =>
    new ConfigError(`${where}: ${JSON.stringify(raw)} is not ${what}`);
  switch (o.kind) {
    case 'string':
      if (typeof raw !== 'string' || raw === '') throw bad('a non-empty string');
      return raw;
    case 'bool':
      if (raw === true || raw === 'true') return true;
      if (raw === false || raw === 'false') return false;
      throw bad('true or false');
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : NaN;
      if (!Number.isInteger(n) || n < 0) throw bad('a non-negative integer');
      return n;
    }
    case 'list': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : [];
      const list = items.map((s) => (typeof s === 'string' ? s.trim() : '')).filter(Boolean);
      if ((list.length === 0 && !o.emptyOk) || !list.every((p) => p.startsWith('/'))) {
        throw bad('a list of absolute paths');
      }
      return list;
    }
    case 'hosts': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : [];
      const list = items.map((s) => (typeof s === 'string' ? s.trim() : '')).filter(Boolean);
      if (!list.every((h) => HOST_PORT.test(h))) throw bad('a list of host[:port]');
      return list;
    }
    case 'registries': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : [];
      const list = items.map((s) => (typeof s === 'string' ? s.trim() : '')).filter(Boolean);
      if (!list.every(isAllowedRegistryEntry)) throw bad('a list of host[:port] (globs per label)');
      return list;
    }
    case 'launch':
      if (raw !== 'detached' && raw !== 'systemd-scope') throw bad('detached or systemd-scope');
      return raw;
    case 'cgroupParent':
      if (raw === 'none') return raw;
      try {
        return checkCgroupParent(String(raw));
      } catch {
        throw bad("none or a relative cgroup path (names of letters, digits, '_', '.', ':', '-')");
      }
    case 'accel':
      if (raw !== 'auto' && raw !== 'kvm' && raw !== 'tcg') throw bad('auto, kvm or tcg');
      return raw;
    case 'machine':
      if (raw !== 'auto' && raw !== 'pc' && raw !== 'q35' && raw !== 'microvm') {
        throw bad('auto, pc, q35 or microvm');
      }
      return raw;
  }
}
