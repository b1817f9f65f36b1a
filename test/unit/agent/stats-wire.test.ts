// A Kata 1.x agent's StatsContainer answer carries integers wider than 2^53 (cgroup v1's "no
// limit"); our client clamps them on the wire before decoding instead of failing the call.
import { describe, expect, it } from '@jest/globals';
import { StatsContainerResponse } from '../../../src/generated/agent.js';
import { clampWideIntegers, decodeStatsResponse } from '../../../src/agent/stats-wire.js';

// protoc --encode=grpc.StatsContainerResponse of:
//   cgroup_stats { cpu_stats { cpu_usage { total_usage: 1000 percpu_usage: 1152921504606846976
//   percpu_usage: 5 } } memory_stats { usage { usage: 4096 limit: 9223372036854771712 }
//   stats { key: "hierarchical_memory_limit" value: 9223372036854771712 } stats { key: "rss" value: 7 } }
//   hugetlb_stats { key: "2MB" value { usage: 18446744073709551615 } } }
//   network_stats { name: "eth0" rx_bytes: 9 }
const ONE_X =
  '0a680a110a0f08e807120a80808080808080801005123f120d0880202080e0ffffffffffff7f32250a196869657261' +
  '7263686963616c5f6d656d6f72795f6c696d69741080e0ffffffffffff7f32070a0372737310072a120a03324d4212' +
  '0b08ffffffffffffffffff0112080a04657468301009';
const MAX = Number.MAX_SAFE_INTEGER;

describe('StatsContainer answers with integers wider than 2^53', () => {
  it('the generated decoder alone refuses them', () => {
    expect(() => StatsContainerResponse.decode(Buffer.from(ONE_X, 'hex'))).toThrow(
      /MAX_SAFE_INTEGER/,
    );
  });

  it('clamped, they read as MAX_SAFE_INTEGER (packed, nested, map values); the rest is intact', () => {
    const res = decodeStatsResponse(Buffer.from(ONE_X, 'hex'));
    expect(res.cgroupStats?.cpuStats?.cpuUsage).toMatchObject({
      totalUsage: 1000,
      percpuUsage: [MAX, 5],
    });
    expect(res.cgroupStats?.memoryStats?.usage).toMatchObject({ usage: 4096, limit: MAX });
    expect(res.cgroupStats?.memoryStats?.stats).toEqual({
      hierarchical_memory_limit: MAX,
      rss: 7,
    });
    expect(res.cgroupStats?.hugetlbStats['2MB']?.usage).toBe(MAX);
    expect(res.networkStats).toMatchObject([{ name: 'eth0', rxBytes: 9 }]);
  });

  it('an answer with nothing too wide passes byte for byte', () => {
    const ours = StatsContainerResponse.encode(
      StatsContainerResponse.fromPartial({
        cgroupStats: {
          cpuStats: { cpuUsage: { totalUsage: 5e9, percpuUsage: [1, 2] } },
          memoryStats: { usage: { usage: 1, limit: MAX }, stats: { file: 3 } },
          blkioStats: { ioServiceBytesRecursive: [{ major: 254, op: 'Read', value: 1 }] },
        },
        networkStats: [{ name: 'lo', rxBytes: 1, txBytes: 1 }],
      }),
    ).finish();
    expect(Buffer.from(clampWideIntegers(ours)).toString('hex')).toBe(
      Buffer.from(ours).toString('hex'),
    );
  });

  it('refuses a truncated message', () => {
    expect(() => clampWideIntegers(Buffer.from('0a68', 'hex'))).toThrow(/truncated/);
  });
});
