#!/usr/bin/env node
// Boots the guest image under QEMU (TCG, 1 vCPU, 512 MiB, serial console on stdio) and reports the
// wall time from spawning QEMU until the agent-ready line shows on the console, then kills QEMU.
//
//   node guest/measure-boot.mjs [--runs 3] [--machine pc|microvm] [--bios qboot|microvm|default]
//     [--image DIR] [--kernel FILE] [--initrd FILE] [--append "extra cmdline"] [--cmdline "full"]
//     [--pattern REGEX] [--devices] [--timeout 60] [--mem 512] [--tb-size MiB] [--verbose]
//
// --devices adds the devices a real sandbox has (virtio-serial agent port, 9p share, virtio-blk),
// so module probing is part of the figure. Prints one line per boot and a median/min/max summary
// (plus a JSON line with --json).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const flag = (name) => args.includes(`--${name}`);

// QEMU's CPU time (user + system) so far: a figure that holds up when other work shares the
// machine's cores, where wall time does not.
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

const cacheRoot = join(
  process.env.XDG_CACHE_HOME || join(homedir(), '.cache'),
  'kata-sandbox-operator',
  'guest',
);
const image = opt('image', join(cacheRoot, 'current'));
const kernel = opt('kernel', join(image, 'vmlinuz'));
const initrd = opt('initrd', join(image, 'initrd'));
const runs = Number(opt('runs', '3'));
const machine = opt('machine', 'pc');
const bios = opt('bios', 'default');
const mem = opt('mem', '512');
// TCG's translation cache (the node agent gives each VM 128 MiB; QEMU's own default is 1 GiB).
const tbSize = opt('tb-size', '128');
const timeoutS = Number(opt('timeout', '60'));
const pattern = new RegExp(opt('pattern', 'kata-guest-agent.*ready'));
const baseCmdline =
  'console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd';
const cmdline = opt('cmdline', baseCmdline) + (opt('append') ? ` ${opt('append')}` : '');
const verbose = flag('verbose');

for (const f of [kernel, initrd]) {
  if (!existsSync(f)) {
    console.error(`measure-boot: ${f} does not exist (run make guest)`);
    process.exit(2);
  }
}

function qemuArgv(scratch) {
  const a = ['-accel', `tcg,tb-size=${tbSize}`, '-smp', '1', '-m', mem];
  a.push('-nodefaults', '-no-user-config');
  a.push('-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot');
  if (machine === 'microvm') {
    a.push('-machine', 'microvm,acpi=on,pit=on,pic=on,rtc=on');
  } else {
    a.push('-machine', `${machine}`);
  }
  if (bios === 'qboot') a.push('-bios', '/usr/share/qemu/qboot.rom');
  else if (bios === 'microvm') a.push('-bios', '/usr/share/qemu/bios-microvm.bin');
  a.push('-kernel', kernel, '-initrd', initrd, '-append', cmdline);
  if (flag('devices')) {
    const pci = machine !== 'microvm';
    const disk = join(scratch, 'disk.img');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    a.push('-device', pci ? 'virtio-serial-pci' : 'virtio-serial-device');
    a.push('-chardev', `socket,path=${join(scratch, 'agent.sock')},server=on,wait=off,id=charch0`);
    a.push('-device', 'virtserialport,chardev=charch0,name=agent.channel.0');
    a.push('-fsdev', `local,id=fs0,path=${scratch},security_model=none,multidevs=remap`);
    a.push(
      '-device',
      `${pci ? 'virtio-9p-pci' : 'virtio-9p-device'},fsdev=fs0,mount_tag=kataShared`,
    );
    a.push('-drive', `file=${disk},if=none,id=d0,format=raw`);
    a.push('-device', `${pci ? 'virtio-blk-pci' : 'virtio-blk-device'},drive=d0,serial=c0`);
  }
  return a;
}

function bootOnce(i) {
  return new Promise((resolve) => {
    const scratch = mkdtempSync(join(tmpdir(), 'measure-boot-'));
    const argv = qemuArgv(scratch);
    if (verbose && i === 0) console.error(`qemu-system-x86_64 ${argv.join(' ')}`);
    const t0 = performance.now();
    const q = spawn('qemu-system-x86_64', argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    const marks = {};
    const finish = (result) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      q.kill('SIGKILL');
      q.once('close', () => {
        rmSync(scratch, { recursive: true, force: true });
        resolve({ ...result, marks, tail: out.split('\n').slice(-15).join('\n') });
      });
    };
    const timer = setTimeout(() => finish({ ok: false, why: 'timeout' }), timeoutS * 1000);
    const onData = (d) => {
      out += d.toString();
      if (verbose) process.stderr.write(d);
      const now = (performance.now() - t0) / 1000;
      const m1 = /starting kata-guest-agent at uptime ([\d.]+)s/.exec(out);
      if (m1 && marks.agentStartWall === undefined) {
        marks.agentStartWall = now;
        marks.agentStartUptime = Number(m1[1]);
      }
      if (pattern.test(out)) {
        const m2 = /ready \(uptime ([\d.]+)s\)/.exec(out);
        if (m2) marks.readyUptime = Number(m2[1]);
        finish({ ok: true, wall: now, cpu: cpuSeconds(q.pid) });
      }
    };
    q.stdout.on('data', onData);
    q.stderr.on('data', onData);
    q.once('exit', (code) => finish({ ok: false, why: `qemu exited (${code})` }));
  });
}

const results = [];
for (let i = 0; i < runs; i++) {
  const r = await bootOnce(i);
  if (!r.ok) {
    console.log(`boot ${i + 1}: FAILED (${r.why})\n${r.tail}`);
    process.exitCode = 1;
    continue;
  }
  results.push(r);
  const m = r.marks;
  console.log(
    `boot ${i + 1}: ${r.wall.toFixed(2)} s wall to ready, QEMU CPU ${r.cpu.toFixed(2)} s` +
      (m.agentStartUptime !== undefined
        ? ` (init starts agent at guest uptime ${m.agentStartUptime.toFixed(2)} s / wall ${m.agentStartWall.toFixed(2)} s` +
          (m.readyUptime !== undefined
            ? `, agent ready at uptime ${m.readyUptime.toFixed(2)} s`
            : '') +
          ')'
        : ''),
  );
}
if (results.length) {
  const median = (v) =>
    v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2] + v[v.length / 2 - 1]) / 2;
  const w = results.map((r) => r.wall).sort((a, b) => a - b);
  const c = results.map((r) => r.cpu).sort((a, b) => a - b);
  const med = median(w);
  const summary = {
    machine,
    bios,
    kernel,
    initrd,
    cmdline,
    devices: flag('devices'),
    runs: results.length,
    median: +med.toFixed(2),
    min: +w[0].toFixed(2),
    max: +w[w.length - 1].toFixed(2),
    cpuMedian: +median(c).toFixed(2),
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
  console.log(
    `median ${summary.median} s, min ${summary.min} s, max ${summary.max} s over ${w.length} boots ` +
      `(QEMU CPU median ${summary.cpuMedian} s; load ${summary.loadavg})`,
  );
  if (flag('json')) console.log(JSON.stringify(summary));
}
