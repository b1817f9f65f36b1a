// The names and defaults the host side and the guest must agree on, in one place: the node agent
// (QEMU's argv, the OCI spec it sends) and the guest agent (the port it serves, the mounts it
// makes, the spec it completes) both import them from here.

/** The virtio-serial port the agent's gRPC channel runs over (Kata 1.x's name). */
export const AGENT_CHANNEL_NAME = 'agent.channel.0';

/**
 * The virtio-blk serial of the guest's own read-only root drive (the image's rootfs.erofs).
 * Upper case and '_' are never in a virtioBlkSerial of a DNS-label name, and the host refuses any
 * other drive with it, so the guest agent can never be pointed at its own root as a tenant's disk.
 */
export const GUEST_ROOT_DRIVE_SERIAL = 'KATA_GUEST_ROOT';

/** The 9p mount tag of the sandbox's shared directory. */
export const SHARED_MOUNT_TAG = 'kataShared';

/**
 * How ReadStdout/ReadStderr say a stream has ended: the Kata 1.x agent returns its read's io.EOF,
 * which grpc-go sends as status Unknown (2) with the message "EOF", and the 1.x shim reads until a
 * read fails. Our guest ends streams the same way; our client takes exactly this status as the end.
 */
export const END_OF_STREAM = { code: 2, details: 'EOF' } as const;

/** Docker's and containerd's default capability set: what a container gets when nothing else is asked. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];
