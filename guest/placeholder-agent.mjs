// Stand-in for the guest agent while src/agent/guest/main.ts does not exist yet: says it is
// ready on the console and idles, so the image can be booted and measured.
import { readFileSync } from 'node:fs';

const uptime = readFileSync('/proc/uptime', 'utf8').split(' ')[0];
console.log(`kata-guest-agent placeholder ready (uptime ${uptime}s)`);
setInterval(() => {}, 1 << 30);
