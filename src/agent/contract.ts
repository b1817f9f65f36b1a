// The names and defaults the host side and the guest must agree on, in one place: the node agent
// (QEMU's argv, the OCI spec it sends) and the guest agent (the port it serves, the mounts it
// makes, the spec it completes) both import them from here.

/** The virtio-serial port the agent's gRPC channel runs over (Kata 1.x's name). */
export const AGENT_CHANNEL_NAME = 'agent.channel.0';

/** The 9p mount tag of the sandbox's shared directory. */
export const SHARED_MOUNT_TAG = 'kataShared';

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
