// Golden bytes for every agent-protocol message we use: each hex string is what `protoc --encode`
// (Google's own encoder) makes of the text-format value beside it, with Kata 1.x's .proto files
// (re-derived in the peer layer, test/peers/kata1-protocol.test.ts) and with ours
// (wire-golden.test.ts); `oursOnly` marks the cases using fields 1.x does not have.
import * as agent from '../../../src/generated/agent.js';
import * as health from '../../../src/generated/health.js';
import { IPFamily } from '../../../src/generated/types.js';

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  fromPartial(object: object): T;
}

export interface GoldenCase {
  type: string;
  codec: Codec<unknown>;
  value: object;
  text: string;
  hex: string;
  /** Uses fields that are ours only (types.Route 6-8): no Kata 1.x encoding to compare with. */
  oursOnly?: true;
}

const SHARED = '/run/kata-containers/shared/containers/';

export const cases: GoldenCase[] = [
  {
    type: 'grpc.CreateContainerRequest',
    codec: agent.CreateContainerRequest,
    value: {
      containerId: 'main',
      execId: 'main',
      stringUser: { uid: '1000', gid: '1000', additionalGids: ['10'] },
      devices: [{ id: 'disk0', type: 'blk', vmPath: '/dev/vdb', containerPath: '/dev/xvdb' }],
      storages: [
        {
          driver: 'blk',
          source: '/dev/vda',
          fstype: 'xfs',
          options: ['nouuid'],
          mountPoint: `${SHARED}main`,
        },
      ],
      OCI: {
        Version: '1.1.0',
        Process: {
          Terminal: false,
          User: { UID: 1000, GID: 1000, AdditionalGids: [10] },
          Args: ['/bin/sh', '-c'],
          Env: ['A=b'],
          Cwd: '/',
        },
        Root: { Path: `${SHARED}main/rootfs` },
        Hostname: 'web',
        Mounts: [{ destination: '/dev/shm', source: 'shm', type: 'tmpfs', options: ['noexec'] }],
        Linux: { Namespaces: [{ Type: 'mount' }] },
      },
      sandboxPidns: true,
      agentPidns: true,
    },
    text:
      'container_id: "main" exec_id: "main" string_user { uid: "1000" gid: "1000" additionalGids: "10" } ' +
      'devices { id: "disk0" type: "blk" vm_path: "/dev/vdb" container_path: "/dev/xvdb" } ' +
      'storages { driver: "blk" source: "/dev/vda" fstype: "xfs" options: "nouuid" mount_point: "/run/kata-containers/shared/containers/main" } ' +
      'OCI { Version: "1.1.0" Process { Terminal: false User { UID: 1000 GID: 1000 AdditionalGids: 10 } Args: "/bin/sh" Args: "-c" Env: "A=b" Cwd: "/" } ' +
      'Root { Path: "/run/kata-containers/shared/containers/main/rootfs" } Hostname: "web" ' +
      'Mounts { destination: "/dev/shm" source: "shm" type: "tmpfs" options: "noexec" } Linux { Namespaces { Type: "mount" } } } ' +
      'sandbox_pidns: true agent_pidns: true',
    hex:
      '0a046d61696e12046d61696e1a100a04313030301204313030301a02313022210a056469736b301203626c6b1a08' +
      '2f6465762f76646222092f6465762f787664622a490a03626c6b1a082f6465762f76646122037866732a066e6f75' +
      '756964322b2f72756e2f6b6174612d636f6e7461696e6572732f7368617265642f636f6e7461696e6572732f6d61' +
      '696e328f010a05312e312e3012201a0908e80710e8071a010a22072f62696e2f736822022d632a03413d6232012f' +
      '1a340a322f72756e2f6b6174612d636f6e7461696e6572732f7368617265642f636f6e7461696e6572732f6d6169' +
      '6e2f726f6f74667322037765622a1e0a082f6465762f73686d120373686d1a05746d70667322066e6f6578656342' +
      '0932070a056d6f756e7438014001',
  },
  {
    type: 'grpc.StartContainerRequest',
    codec: agent.StartContainerRequest,
    value: { containerId: 'main' },
    text: 'container_id: "main"',
    hex: '0a046d61696e',
  },
  {
    type: 'grpc.RemoveContainerRequest',
    codec: agent.RemoveContainerRequest,
    value: { containerId: 'main', timeout: 30 },
    text: 'container_id: "main" timeout: 30',
    hex: '0a046d61696e101e',
  },
  {
    type: 'grpc.ExecProcessRequest',
    codec: agent.ExecProcessRequest,
    value: {
      containerId: 'main',
      execId: 'e1',
      stringUser: { uid: '0' },
      process: { Terminal: true, User: { UID: 0 }, Args: ['cat'], Cwd: '/tmp' },
    },
    text:
      'container_id: "main" exec_id: "e1" string_user { uid: "0" } ' +
      'process { Terminal: true User { UID: 0 } Args: "cat" Cwd: "/tmp" }',
    hex: '0a046d61696e120265311a030a0130220f08011a00220363617432042f746d70',
  },
  {
    type: 'grpc.SignalProcessRequest',
    codec: agent.SignalProcessRequest,
    value: { containerId: 'main', execId: '', signal: 15 },
    text: 'container_id: "main" exec_id: "" signal: 15',
    hex: '0a046d61696e180f',
  },
  {
    type: 'grpc.WaitProcessRequest',
    codec: agent.WaitProcessRequest,
    value: { containerId: 'main', execId: 'main' },
    text: 'container_id: "main" exec_id: "main"',
    hex: '0a046d61696e12046d61696e',
  },
  {
    type: 'grpc.WaitProcessResponse',
    codec: agent.WaitProcessResponse,
    value: { status: -1 },
    text: 'status: -1',
    hex: '08ffffffffffffffffff01',
  },
  {
    type: 'grpc.WriteStreamRequest',
    codec: agent.WriteStreamRequest,
    value: { containerId: 'c', execId: 'e', data: Buffer.from('hi\n') },
    text: 'container_id: "c" exec_id: "e" data: "hi\\n"',
    hex: '0a01631201651a0368690a',
  },
  {
    type: 'grpc.WriteStreamResponse',
    codec: agent.WriteStreamResponse,
    value: { len: 3 },
    text: 'len: 3',
    hex: '0803',
  },
  {
    type: 'grpc.ReadStreamRequest',
    codec: agent.ReadStreamRequest,
    value: { containerId: 'c', execId: 'e', len: 4096 },
    text: 'container_id: "c" exec_id: "e" len: 4096',
    hex: '0a0163120165188020',
  },
  {
    type: 'grpc.ReadStreamResponse',
    codec: agent.ReadStreamResponse,
    value: { data: Buffer.from('hello\n') },
    text: 'data: "hello\\n"',
    hex: '0a0668656c6c6f0a',
  },
  {
    type: 'grpc.CloseStdinRequest',
    codec: agent.CloseStdinRequest,
    value: { containerId: 'c', execId: 'e' },
    text: 'container_id: "c" exec_id: "e"',
    hex: '0a0163120165',
  },
  {
    type: 'grpc.TtyWinResizeRequest',
    codec: agent.TtyWinResizeRequest,
    value: { containerId: 'c', execId: 'e', row: 24, column: 80 },
    text: 'container_id: "c" exec_id: "e" row: 24 column: 80',
    hex: '0a016312016518182050',
  },
  {
    type: 'grpc.UpdateInterfaceRequest',
    codec: agent.UpdateInterfaceRequest,
    value: {
      interface: {
        device: 'eth0',
        name: 'eth0',
        IPAddresses: [{ family: IPFamily.v4, address: '10.0.0.2', mask: '24' }],
        mtu: 1500,
        hwAddr: '02:00:00:00:00:01',
        rawFlags: 4099,
      },
    },
    text:
      'interface { device: "eth0" name: "eth0" IPAddresses { family: v4 address: "10.0.0.2" mask: "24" } ' +
      'mtu: 1500 hwAddr: "02:00:00:00:00:01" raw_flags: 4099 }',
    hex: '0a350a04657468301204657468301a0e120831302e302e302e321a02323420dc0b2a1130323a30303a30303a30303a30303a3031408320',
  },
  {
    type: 'grpc.UpdateRoutesRequest',
    codec: agent.UpdateRoutesRequest,
    oursOnly: true,
    value: {
      routes: {
        Routes: [
          { dest: '10.0.0.0/24', device: 'eth0', source: '10.0.0.2', scope: 253 },
          { gateway: '10.0.0.1', device: 'eth0', family: IPFamily.v4, mtu: 1400 },
        ],
      },
    },
    text:
      'routes { Routes { dest: "10.0.0.0/24" device: "eth0" source: "10.0.0.2" scope: 253 } ' +
      'Routes { gateway: "10.0.0.1" device: "eth0" family: v4 mtu: 1400 } }',
    hex: '0a370a200a0b31302e302e302e302f32341a0465746830220831302e302e302e3228fd010a13120831302e302e302e311a046574683040f80a',
  },
  {
    type: 'grpc.Interfaces',
    codec: agent.Interfaces,
    value: {
      Interfaces: [
        { name: 'eth0', mtu: 9000, type: 'veth', pciPath: '/devices/pci0000:00/0000:00:03.0' },
      ],
    },
    text: 'Interfaces { name: "eth0" mtu: 9000 type: "veth" pciPath: "/devices/pci0000:00/0000:00:03.0" }',
    hex: '0a3112046574683020a84632202f646576696365732f706369303030303a30302f303030303a30303a30332e303a0476657468',
  },
  {
    type: 'grpc.Routes',
    codec: agent.Routes,
    oursOnly: true,
    value: { Routes: [{ dest: 'default', gateway: '10.0.0.1', device: 'eth0', flags: 1 }] },
    text: 'Routes { dest: "default" gateway: "10.0.0.1" device: "eth0" flags: 1 }',
    hex: '0a1b0a0764656661756c74120831302e302e302e311a04657468303801',
  },
  {
    type: 'grpc.ListInterfacesRequest',
    codec: agent.ListInterfacesRequest,
    value: {},
    text: '',
    hex: '',
  },
  { type: 'grpc.ListRoutesRequest', codec: agent.ListRoutesRequest, value: {}, text: '', hex: '' },
  {
    type: 'grpc.CreateSandboxRequest',
    codec: agent.CreateSandboxRequest,
    value: {
      hostname: 'web',
      dns: ['nameserver 10.0.0.10'],
      storages: [
        {
          driver: '9p',
          source: 'kataShared',
          fstype: '9p',
          options: ['trans=virtio,version=9p2000.L,cache=mmap', 'nodev'],
          mountPoint: SHARED,
        },
      ],
      sandboxPidns: false,
      sandboxId: '0b1e5a5e-uid',
      kernelModules: [{ name: 'e1000', parameters: ['debug=1'] }],
    },
    text:
      'hostname: "web" dns: "nameserver 10.0.0.10" storages { driver: "9p" source: "kataShared" fstype: "9p" ' +
      'options: "trans=virtio,version=9p2000.L,cache=mmap" options: "nodev" ' +
      'mount_point: "/run/kata-containers/shared/containers/" } sandbox_pidns: false ' +
      'sandbox_id: "0b1e5a5e-uid" kernel_modules { name: "e1000" parameters: "debug=1" }',
    hex:
      '0a0377656212146e616d657365727665722031302e302e302e31301a6e0a0239701a0a6b61746153686172656422' +
      '0239702a287472616e733d76697274696f2c76657273696f6e3d3970323030302e4c2c63616368653d6d6d61702a' +
      '056e6f64657632272f72756e2f6b6174612d636f6e7461696e6572732f7368617265642f636f6e7461696e657273' +
      '2f2a0c30623165356135652d7569643a100a056531303030120764656275673d31',
  },
  {
    type: 'grpc.DestroySandboxRequest',
    codec: agent.DestroySandboxRequest,
    value: {},
    text: '',
    hex: '',
  },
  {
    type: 'grpc.GuestDetailsRequest',
    codec: agent.GuestDetailsRequest,
    value: { memBlockSize: true, memHotplugProbe: true },
    text: 'mem_block_size: true mem_hotplug_probe: true',
    hex: '08011001',
  },
  {
    type: 'grpc.GuestDetailsResponse',
    codec: agent.GuestDetailsResponse,
    value: {
      memBlockSizeBytes: 134217728,
      agentDetails: { version: '0.1.0', initDaemon: true, storageHandlers: ['9p', 'blk'] },
      supportMemHotplugProbe: false,
    },
    text:
      'mem_block_size_bytes: 134217728 agent_details { version: "0.1.0" init_daemon: true ' +
      'storage_handlers: "9p" storage_handlers: "blk" } support_mem_hotplug_probe: false',
    hex: '088080804012120a05302e312e301001220239702203626c6b',
  },
  {
    type: 'grpc.GuestDetailsResponse',
    codec: agent.GuestDetailsResponse,
    value: {
      memBlockSizeBytes: 134217728,
      guestMemory: { totalBytes: 1028194304, availableBytes: 820428800 },
    },
    text: 'mem_block_size_bytes: 134217728 guest_memory { total_bytes: 1028194304 available_bytes: 820428800 }',
    hex: '0880808040a2060c088080a4ea031080809b8703',
  },
  {
    type: 'grpc.StatsContainerRequest',
    codec: agent.StatsContainerRequest,
    value: { containerId: 'web' },
    text: 'container_id: "web"',
    hex: '0a03776562',
  },
  {
    type: 'grpc.StatsContainerResponse',
    codec: agent.StatsContainerResponse,
    value: {
      cgroupStats: {
        cpuStats: {
          cpuUsage: {
            totalUsage: 1523410000,
            usageInKernelmode: 323410000,
            usageInUsermode: 1200000000,
          },
          throttlingData: { periods: 40, throttledPeriods: 3, throttledTime: 51234000 },
        },
        memoryStats: {
          cache: 1048576,
          usage: { usage: 3977216, maxUsage: 4194304, failcnt: 2, limit: 536870912 },
          swapUsage: { usage: 3977216, limit: 536870912 },
          useHierarchy: true,
          stats: { inactive_file: 524288 },
        },
        pidsStats: { current: 3, limit: 100 },
        blkioStats: {
          ioServiceBytesRecursive: [{ major: 254, op: 'Read', value: 40960 }],
          ioServicedRecursive: [{ major: 254, op: 'Write', value: 2 }],
        },
        hugetlbStats: { '2MB': { usage: 2097152, failcnt: 1 } },
      },
      networkStats: [
        {
          name: 'eth0',
          rxBytes: 123456,
          rxPackets: 321,
          rxErrors: 1,
          rxDropped: 2,
          txBytes: 65432,
          txPackets: 210,
          txErrors: 3,
          txDropped: 4,
        },
      ],
    },
    text:
      'cgroup_stats { cpu_stats { cpu_usage { total_usage: 1523410000 usage_in_kernelmode: 323410000 ' +
      'usage_in_usermode: 1200000000 } throttling_data { periods: 40 throttled_periods: 3 throttled_time: 51234000 } } ' +
      'memory_stats { cache: 1048576 usage { usage: 3977216 max_usage: 4194304 failcnt: 2 limit: 536870912 } ' +
      'swap_usage { usage: 3977216 limit: 536870912 } use_hierarchy: true stats { key: "inactive_file" value: 524288 } } ' +
      'pids_stats { current: 3 limit: 100 } blkio_stats { io_service_bytes_recursive { major: 254 op: "Read" value: 40960 } ' +
      'io_serviced_recursive { major: 254 op: "Write" value: 2 } } hugetlb_stats { key: "2MB" value { usage: 2097152 failcnt: 1 } } } ' +
      'network_stats { name: "eth0" rx_bytes: 123456 rx_packets: 321 rx_errors: 1 rx_dropped: 2 tx_bytes: 65432 ' +
      'tx_packets: 210 tx_errors: 3 tx_dropped: 4 }',
    hex:
      '0a94010a1f0a1208d0c8b5d60518d0b09b9a012080989abc0412090828100318d089b718123c0880804012120880' +
      'e0f201108080800218022080808080021a0b0880e0f201208080808002280132130a0d696e6163746976655f6669' +
      '6c65108080201a0408031064221d0a0d08fe011a04526561642080c002120c08fe011a05577269746520022a0e0a' +
      '03324d42120708808080011801121c0a046574683010c0c40718c102200128023098ff0338d20140034804',
  },
  {
    type: 'grpc.CheckRequest',
    codec: health.CheckRequest,
    value: { service: 'grpc.AgentService' },
    text: 'service: "grpc.AgentService"',
    hex: '0a11677270632e4167656e7453657276696365',
  },
  {
    type: 'grpc.HealthCheckResponse',
    codec: health.HealthCheckResponse,
    value: { status: health.HealthCheckResponse_ServingStatus.SERVING },
    text: 'status: SERVING',
    hex: '0801',
  },
  {
    type: 'grpc.VersionCheckResponse',
    codec: health.VersionCheckResponse,
    value: { grpcVersion: '1.14', agentVersion: '0.1.0' },
    text: 'grpc_version: "1.14" agent_version: "0.1.0"',
    hex: '0a04312e31341205302e312e30',
  },
];
