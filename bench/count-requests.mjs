// Preloaded into the controller under benchmark: counts its HTTPS requests to the API server,
// and among them the writes (any method but GET), and writes {"requests":N,"writes":N} to
// $KATA_BENCH_REQUESTS_FILE every second and on exit.
import https from 'node:https';
import { writeFileSync } from 'node:fs';

const counts = { requests: 0, writes: 0 };
const methodOf = (args) => {
  const opts = args.find((a) => a && typeof a === 'object' && !(a instanceof URL));
  return (opts?.method ?? 'GET').toUpperCase();
};
const original = https.request;
https.request = function countedRequest(...args) {
  counts.requests += 1;
  if (methodOf(args) !== 'GET') counts.writes += 1;
  return original.apply(this, args);
};
const file = process.env.KATA_BENCH_REQUESTS_FILE;
const dump = () => file && writeFileSync(file, JSON.stringify(counts));
process.on('exit', dump);
setInterval(dump, 1000).unref();
