import path from 'node:path';
import { invalidArgument } from './status-error.js';

/** Every path the agent mounts on or runs from lives under this directory. */
export const AGENT_DIR = '/run/kata-containers/';
/** Guest device nodes (block drives by their vd* names). */
export const DEVICE_DIR = '/dev/';

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;
// A container's bundle is AGENT_DIR/<id>; this id would land on the 9p share's parent.
const RESERVED_CONTAINER_IDS = new Set(['shared']);

const show = (value: string): string => JSON.stringify(value);

function checkSyntax(field: string, value: string): void {
  if (value === '') throw invalidArgument(`${field} is empty`);
  if (value.includes('\0')) throw invalidArgument(`${field} ${show(value)} contains a NUL byte`);
  if (!value.startsWith('/')) throw invalidArgument(`${field} ${show(value)} is not absolute`);
  if (value.split('/').includes('..')) {
    throw invalidArgument(`${field} ${show(value)} has a ".." segment`);
  }
  if (path.posix.normalize(value) !== value) {
    throw invalidArgument(`${field} ${show(value)} is not a normalized path`);
  }
}

/**
 * Checks that `value` is an absolute, normalized path strictly under `root` (a directory with a
 * trailing slash) and returns it. The message names the field, for the host's status and Events.
 */
export function guardPath(field: string, value: string, root: string = AGENT_DIR): string {
  if (value.includes('\0')) throw invalidArgument(`${field} ${show(value)} contains a NUL byte`);
  if (!value.startsWith('/') || value.split('/').includes('..')) {
    throw invalidArgument(`${field} ${show(value)} escapes ${root}`);
  }
  checkSyntax(field, value);
  const base = root.endsWith('/') ? root : `${root}/`;
  if (!value.startsWith(base) || value.length === base.length) {
    throw invalidArgument(`${field} ${show(value)} escapes ${base}`);
  }
  return value;
}

/** A path inside the container (resolved by crun within its rootfs): absolute and normalized. */
export function guardContainerPath(field: string, value: string): string {
  checkSyntax(field, value);
  if (value === '/') throw invalidArgument(`${field} ${show(value)} is the container's root`);
  return value;
}

export function validateId(field: string, value: string): string {
  if (!ID_RE.test(value)) {
    throw invalidArgument(
      `${field} ${show(value)} is not a valid id (1-64 of [a-zA-Z0-9_.-], starting alphanumeric)`,
    );
  }
  return value;
}

export function validateContainerId(field: string, value: string): string {
  validateId(field, value);
  if (RESERVED_CONTAINER_IDS.has(value)) {
    throw invalidArgument(`${field} ${show(value)} is reserved by the guest agent`);
  }
  return value;
}
