// Preloaded into the controller under benchmark: counts its HTTPS requests to the API server and
// writes the count to $KATA_BENCH_REQUESTS_FILE on exit.
import https from 'node:https';
import { writeFileSync } from 'node:fs';

let count = 0;
const original = https.request;
https.request = function countedRequest(...args) {
  count += 1;
  return original.apply(this, args);
};
const file = process.env.KATA_BENCH_REQUESTS_FILE;
const dump = () => file && writeFileSync(file, String(count));
process.on('exit', dump);
setInterval(dump, 1000).unref();
