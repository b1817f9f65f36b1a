// Facts about a KataSandbox that the controller and the node agent must read the same way.
/** The schema's default for spec.vm.memoryMiB (an object written before defaulting lacks it). */
export const DEFAULT_MEMORY_MIB = 512;

/** The memory the sandbox's VM gets, and holds of its node's capacity. */
export function vmMemoryMiB(spec: { vm?: { memoryMiB?: number } }): number {
  return spec.vm?.memoryMiB ?? DEFAULT_MEMORY_MIB;
}

/** The vCPUs the sandbox's VM gets (the schema's default: 1). */
export function vmVcpus(spec: { vm?: { vcpus?: number } }): number {
  return spec.vm?.vcpus ?? 1;
}

/** A sandbox that has ended (Succeeded or Failed) never runs again and frees its node. */
export function hasEnded(phase: string | undefined): boolean {
  return phase === 'Succeeded' || phase === 'Failed';
}
