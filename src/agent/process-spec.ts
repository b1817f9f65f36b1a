import type { StringUser } from '../generated/agent.js';
import type { Process } from '../generated/oci.js';
import { InvalidInputError } from './errors.js';

const UINT32_MAX = 0xffff_ffff;

/** What a container or exec asks to run, in the CRD's terms. */
export interface ProcessCommand {
  args: string[];
  env: { name: string; value: string }[];
  cwd: string;
  /** "uid" or "uid:gid"; empty means root. */
  user?: string;
  primaryGroup?: number | string;
  supplementalGroups?: (number | string)[];
  terminal?: boolean;
}

function parseId(value: number | string, field: string, whole: string): number {
  const text = String(value);
  if (!/^[0-9]+$/.test(text) || Number(text) > UINT32_MAX) {
    throw new InvalidInputError(
      field,
      `${JSON.stringify(whole)} is not a 32-bit unsigned number${text === whole ? '' : ` (part ${JSON.stringify(text)})`}`,
    );
  }
  return Number(text);
}

export interface ParsedUser {
  uid: number;
  gid: number;
}

/** The seed's user rule: "uid" or "uid:gid", each part a 32-bit unsigned number. */
export function parseUser(user: string): ParsedUser {
  const parts = user.split(':');
  if (parts.length > 2) {
    throw new InvalidInputError(
      'user',
      `${JSON.stringify(user)} has more than two parts (want uid or uid:gid)`,
    );
  }
  const [uid = '', gid] = parts;
  return {
    uid: parseId(uid, 'user', user),
    gid: gid === undefined ? 0 : parseId(gid, 'user', user),
  };
}

export interface BuiltProcess {
  process: Process;
  stringUser: StringUser;
}

/** Turns a command into the agent's Process (and the StringUser the protocol carries beside it). */
export function buildProcess(cmd: ProcessCommand): BuiltProcess {
  const { uid, gid: userGid } = parseUser(cmd.user ?? '0');
  const gid =
    cmd.primaryGroup === undefined
      ? userGid
      : parseId(cmd.primaryGroup, 'primaryGroup', String(cmd.primaryGroup));
  const additionalGids = (cmd.supplementalGroups ?? []).map((g, i) =>
    parseId(g, `supplementalGroups[${i}]`, String(g)),
  );
  return {
    process: {
      Terminal: cmd.terminal ?? false,
      User: { UID: uid, GID: gid, AdditionalGids: additionalGids, Username: '' },
      Args: [...cmd.args],
      Env: cmd.env.map((e) => `${e.name}=${e.value}`),
      Cwd: cmd.cwd,
      Rlimits: [],
      NoNewPrivileges: false,
      ApparmorProfile: '',
      OOMScoreAdj: 0,
      SelinuxLabel: '',
    },
    stringUser: {
      uid: String(uid),
      gid: String(gid),
      additionalGids: additionalGids.map(String),
    },
  };
}
