// Makes the V8 code cache of the agent's CommonJS bundle at image build time (guest/build.sh):
//   node [the guest's node flags] guest/agent-code-cache.mjs <bundle.cjs> <out.cache> <path in image>
// Run it with the node binary that goes into the image and the flags the guest gives it: V8 rejects
// a cache made by another V8 or under other flags. The bundle is compiled the way the guest's loader
// (guest/agent-loader.cjs) compiles it, then run as the agent serving a unix socket in a temporary
// dir only (--no-port), until a Health.Check over that socket is answered; only then is the cache
// taken: it holds the bytecode of every function compiled so far (the start and the first Check),
// not just the top level. Exits 0 once the cache is written.
import { isAscii } from 'node:buffer';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

const [bundle, out, imagePath] = process.argv.slice(2);
if (!bundle || !out || !imagePath) {
  process.stderr.write('usage: agent-code-cache.mjs <bundle.cjs> <out.cache> <path in image>\n');
  process.exit(2);
}
const loader = createRequire(import.meta.url)('./agent-loader.cjs');
const DEADLINE_MS = 60_000;

/** One grpc.Health/Check (Kata's health service) over the unix socket; resolves on a SERVING answer. */
function healthCheck(socketPath) {
  return new Promise((resolve, reject) => {
    const session = connect('http://localhost', {
      createConnection: () => net.connect(socketPath),
    });
    const done = (err) => {
      session.destroy();
      if (err) reject(err);
      else resolve();
    };
    session.on('error', done);
    const req = session.request({
      ':method': 'POST',
      ':path': '/grpc.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', done);
    req.on('end', () => {
      // One gRPC message: 5-byte prefix, then HealthCheckResponse { status = 1 (SERVING) }.
      const body = Buffer.concat(chunks);
      done(
        body.subarray(5).equals(Buffer.from([0x08, 0x01]))
          ? undefined
          : new Error(`unexpected answer ${body.toString('hex')}`),
      );
    });
    req.end(Buffer.from([0, 0, 0, 0, 0])); // uncompressed, empty HealthCheckRequest
  });
}

const bytes = readFileSync(bundle);
if (!isAscii(bytes)) {
  // The loader reads it as latin1: a non-ASCII byte would change the text.
  process.stderr.write(
    `agent-code-cache: ${bundle} is not ASCII (esbuild --minify-whitespace --charset=ascii)\n`,
  );
  process.exit(1);
}
const scratch = mkdtempSync(path.join(tmpdir(), 'agent-code-cache-'));
// However this process ends (the agent may throw), the scratch dir goes with it.
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const socketPath = path.join(scratch, 'agent.sock');
const source = loader.readBundle(bundle);
const script = loader.compileBundle(source, imagePath, undefined);
process.argv = [process.execPath, imagePath, '--no-port', '--socket', socketPath];
loader.runBundle(script, imagePath);

const deadline = Date.now() + DEADLINE_MS;
for (;;) {
  try {
    await healthCheck(socketPath);
    break;
  } catch (err) {
    if (Date.now() > deadline) {
      process.stderr.write(
        `agent-code-cache: the agent did not answer Health.Check within ${DEADLINE_MS} ms: ${err.message}\n`,
      );
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
const cache = script.createCachedData();
writeFileSync(out, cache);
process.stderr.write(`agent-code-cache: ${cache.length} bytes of code cache for ${imagePath}\n`);
process.exit(0);
