// Health.Check / Version and GetGuestDetails.
import { readFile } from 'node:fs/promises';
import type { GuestDetailsRequest, GuestDetailsResponse } from '../../generated/agent.js';
import { HealthCheckResponse_ServingStatus } from '../../generated/health.js';
import { DEVICE_HANDLERS } from './device-nodes.js';
import { parseMeminfo } from './proc-stats.js';
import { STORAGE_DRIVERS } from './storage-mounter.js';

/** The agent's version: package.json's (a unit test keeps them equal; the bundle has no package.json). */
export const AGENT_VERSION = '0.1.0';

export function check(): { status: HealthCheckResponse_ServingStatus } {
  return { status: HealthCheckResponse_ServingStatus.SERVING };
}

export function version(): { grpcVersion: string; agentVersion: string } {
  return { grpcVersion: 'grpc-js', agentVersion: AGENT_VERSION };
}

/** Parses /sys/devices/system/memory/block_size_bytes (hex, no 0x). */
export function parseBlockSize(text: string): number | undefined {
  const t = text.trim();
  return /^[0-9a-fA-F]+$/.test(t) ? parseInt(t, 16) : undefined;
}

export async function guestDetails(
  req: GuestDetailsRequest,
  memoryBlockSizeFile = '/sys/devices/system/memory/block_size_bytes',
  meminfoFile = '/proc/meminfo',
): Promise<GuestDetailsResponse> {
  let memBlockSizeBytes = 0;
  if (req.memBlockSize) {
    try {
      memBlockSizeBytes = parseBlockSize(await readFile(memoryBlockSizeFile, 'utf8')) ?? 0;
    } catch {
      // no memory hotplug support in this kernel: 0 says so
    }
  }
  return {
    memBlockSizeBytes,
    agentDetails: {
      version: AGENT_VERSION,
      initDaemon: false,
      deviceHandlers: [...DEVICE_HANDLERS],
      storageHandlers: [...STORAGE_DRIVERS],
      supportsSeccomp: false,
    },
    supportMemHotplugProbe: false,
    // Our extension (field 100): always filled, the request has no flag for it.
    guestMemory: parseMeminfo(await readFile(meminfoFile, 'utf8').catch(() => '')),
  };
}
