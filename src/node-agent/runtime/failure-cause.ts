// Whose fault a sandbox failure is: the sandbox's owner (a spec the node refuses, an image that
// does not exist, a container that exited non-zero) or the platform (a VM that did not boot or
// died, a guest agent lost, a CNI plugin failing). Alerts page on the second only; the first is
// the owner's to read in status.reason and Events.

/** Failure reasons caused by what the sandbox asked for. Anything else counts as the platform's. */
export const USER_FAILURE_REASONS = [
  'ContainerFailed',
  'ErrImageNeverPull',
  'HostPathNotAllowed',
  'HostPathNotFound',
  'InvalidBlockDevice',
  'InvalidImageName',
  'InvalidNetworkNamespace',
  'KernelNotFound',
  'MemoryTooSmall',
  'NetnsInUse',
  'NetnsNotAllowed',
  'RegistryNotAllowed',
] as const;

/** Failure reasons of the platform, named so their series exist at 0 before the first one. */
export const SYSTEM_FAILURE_REASONS = [
  'AgentLost',
  'BlockHotplugFailed',
  'BootFailed',
  'CNIFailed',
  'GuestImageMissing',
  'NetworkFailed',
  'VMCgroupFailed',
  'VMExited',
  'VMOutOfMemory',
] as const;

export type FailureCause = 'user' | 'system';

const USER = new Set<string>(USER_FAILURE_REASONS);

/** Pure: an unknown reason is the platform's, so a new failure mode alerts until classified. */
export function failureCause(reason: string): FailureCause {
  return USER.has(reason) ? 'user' : 'system';
}
