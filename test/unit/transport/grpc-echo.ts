// A minimal gRPC service with raw byte (de)serialisers, so transport tests need no generated code.
import * as grpc from '@grpc/grpc-js';

const METHOD = '/test.Echo/Echo';
const raw = (b: Buffer) => b;

export async function startEchoServer(socketPath: string): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(
    {
      echo: {
        path: METHOD,
        requestStream: false,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    },
    {
      echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb(null, Buffer.concat([Buffer.from('echo:'), call.request])),
    },
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return server;
}

export function echoClient(socketPath: string): grpc.Client {
  return new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 20,
    'grpc.max_reconnect_backoff_ms': 100,
  });
}

/** One Echo call; waits for the channel to be ready first (within the deadline). */
export async function callEcho(client: grpc.Client, text: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(deadline, (err) => (err ? reject(err) : resolve())),
  );
  return new Promise<string>((resolve, reject) =>
    client.makeUnaryRequest(
      METHOD,
      raw,
      raw,
      Buffer.from(text),
      new grpc.Metadata(),
      { deadline },
      (err, res) =>
        err || !res ? reject(err ?? new Error('no response')) : resolve(res.toString()),
    ),
  );
}

export function stopServer(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}
