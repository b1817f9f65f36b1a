// What the node agent makes on the host for a sandbox, by kind: the leak audit's vocabulary, what
// each kind is, where it is looked for, and how an operator removes one by hand. Pure data.

export const LEAK_KINDS = [
  'qemu',
  'state-dir',
  'run-dir',
  'share-dir',
  'share-mount',
  'view-dir',
  'view-mount',
  'image-lease',
  'log-dir',
  'cgroup',
  'netns',
  'tap',
  'ipam',
] as const;

export type LeakKind = (typeof LEAK_KINDS)[number];

export function isLeakKind(s: string): s is LeakKind {
  return (LEAK_KINDS as readonly string[]).includes(s);
}

/**
 * Kinds found host-wide rather than under this node agent's own roots: on a machine running
 * several node agents (a dev machine, CI) they may be another agent's (`--host-wide known`).
 */
export const HOST_WIDE_KINDS: ReadonlySet<LeakKind> = new Set(['cgroup', 'netns', 'tap', 'ipam']);

export interface KindExplanation {
  what: string;
  /** Where and how the audit looks. */
  observed: string;
  /** Why one without a live sandbox is a leftover. */
  leftover: string;
  /** How to remove one by hand (the audit never does). */
  cleanup: string;
}

export const KIND_EXPLANATIONS: Record<LeakKind, KindExplanation> = {
  qemu: {
    what: "a sandbox's VM",
    observed:
      '/proc/<pid>/cmdline of every process: `-name ksb-<uid>` with an argument under $RUN_DIR/sandboxes/',
    leftover:
      'a VM running for a sandbox that no longer exists (or a second one for a sandbox): an orphan, holding memory and CPU',
    cleanup: 'kill -9 <pid> (after checking the uid is really gone from the API)',
  },
  'state-dir': {
    what: 'what the agent recorded of a sandbox (state.json)',
    observed: '$STATE_DIR/sandboxes/<uid>/',
    leftover: 'the agent removes it last when a sandbox is deleted',
    cleanup: 'rm -rf $STATE_DIR/sandboxes/<uid> once nothing else of the uid is left',
  },
  'run-dir': {
    what: "a sandbox's sockets, QMP, console log and pid file",
    observed: '$RUN_DIR/sandboxes/<uid>/',
    leftover: 'removed at teardown',
    cleanup: 'rm -rf $RUN_DIR/sandboxes/<uid> once its QEMU is gone',
  },
  'share-dir': {
    what: "a sandbox's 9p shared dir",
    observed: '$RUN_DIR/shared/<uid>/',
    leftover: 'removed at teardown, once nothing is mounted below it',
    cleanup: 'unmount what is below it first (see share-mount), then rm -rf $RUN_DIR/shared/<uid>',
  },
  'share-mount': {
    what: "a bind mount in a sandbox's share (a container's rootfs, a volume)",
    observed: '/proc/self/mountinfo: mount points under $RUN_DIR/shared/<uid>/',
    leftover: 'unmounted at teardown; one left pins the host directory it binds',
    cleanup: 'umount <mount point> (deepest first)',
  },
  'view-dir': {
    what: "a container's overlay view of an image or hostPath rootfs (upper, work, merged)",
    observed: '$STATE_DIR/rootfs-views/<uid>/',
    leftover: 'removed at teardown and when the agent starts (views of sandboxes that ended)',
    cleanup: 'unmount what is below it first (see view-mount), then rm -rf the directory',
  },
  'view-mount': {
    what: "a rootfs view's overlay mount or the bind of its lower dir",
    observed: '/proc/self/mountinfo: mount points under $STATE_DIR/rootfs-views/<uid>/',
    leftover: 'unmounted at teardown; one left keeps the cached image from being evicted',
    cleanup: 'umount <mount point> (deepest first)',
  },
  'image-lease': {
    what: "a sandbox's hold on a cached image (the cache never evicts a held image)",
    observed: '<image cache>/leases.json (default $STATE_DIR/images/leases.json), its uids',
    leftover: 'released at teardown and when the agent starts; one left pins the image forever',
    cleanup: 'restart the node agent: it releases the leases of sandboxes it does not run',
  },
  'log-dir': {
    what: "a sandbox's container logs (no retention: deleted with the sandbox)",
    observed: '$LOG_DIR/<namespace>_<name>_<uid>/',
    leftover: "a deleted sandbox's output must not outlive it on the node",
    cleanup: 'rm -rf $LOG_DIR/<namespace>_<name>_<uid>',
  },
  cgroup: {
    what: "a VM's cgroup (detached launch)",
    observed: '<hierarchy>/$VM_CGROUP_PARENT/<uid> in every cgroup hierarchy under $CGROUP_ROOT',
    leftover: 'removed once its QEMU has exited',
    cleanup: 'rmdir <dir> (fails while a process is still in it)',
  },
  netns: {
    what: 'the network namespace the agent made for a mode-cni sandbox',
    observed: 'kata-<uid> in each of $NETNS_ROOTS',
    leftover: 'removed (after CNI DEL) at teardown',
    cleanup: 'ip netns del kata-<uid> (after CNI DEL, see ipam)',
  },
  tap: {
    what: "a VM's tap, its ifalias `kata.sandbox.io/uid=<uid>`",
    observed:
      '`ip -d -j link show` in the node namespace and in every namespace under $NETNS_ROOTS',
    leftover: 'deleted at teardown; one left keeps its tc redirects and blocks the namespace',
    cleanup: 'nsenter --net=<namespace> -- ip link del <tap>',
  },
  ipam: {
    what: 'an address host-local IPAM allocated to a mode-cni sandbox (container id = uid)',
    observed:
      "host-local's files (<dataDir, default /var/lib/cni/networks>/<network>/<ip>) of the network the agent uses",
    leftover: 'released by CNI DEL at teardown; one left takes an address of the range forever',
    cleanup: 'rm <file> (the address is free again)',
  },
};
