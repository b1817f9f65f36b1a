// Serving /metrics: the self-signed certificate (parsed back by Node and by openssl), the HTTPS
// server's answers with a fake authorization, and both components' --metrics-* settings.
import { afterAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { controllerConfig } from '../../../src/controllers/controller-config.js';
import { nodeAgentConfig } from '../../../src/node-agent/config.js';
import { startProbeServer } from '../../../src/observability/http-server.js';
import { startMetricsServer } from '../../../src/observability/metrics-server.js';
import { newKubeConfig } from '../../../src/kube/shared-agent.js';
import { pino } from 'pino';
import { connect } from 'node:tls';
import type { AuthDecision } from '../../../src/observability/metrics-auth.js';
import { selfSignedCertificate } from '../../../src/observability/self-signed-cert.js';

describe('selfSignedCertificate', () => {
  const now = new Date('2026-12-04T06:00:00Z');
  const pair = selfSignedCertificate({
    commonName: 'kata-controller',
    hosts: ['localhost', 'kata-controller-metrics.kata-system.svc', '127.0.0.1', '::1'],
    now,
  });
  const cert = new X509Certificate(pair.certPem);

  it('is signed by its own key, for the names and addresses given', () => {
    expect(cert.subject).toBe('CN=kata-controller');
    expect(cert.issuer).toBe('CN=kata-controller');
    expect(cert.verify(createPublicKey(createPrivateKey(pair.keyPem)))).toBe(true);
    expect(cert.checkHost('kata-controller-metrics.kata-system.svc')).toBeDefined();
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkIP('::1')).toBeDefined();
    expect(cert.checkHost('elsewhere.example')).toBeUndefined();
    expect(cert.ca).toBe(false);
  });

  it('is valid from an hour before now for a year', () => {
    expect(new Date(cert.validFrom).toISOString()).toBe('2026-12-04T05:00:00.000Z');
    expect(new Date(cert.validTo).toISOString()).toBe('2027-12-04T06:00:00.000Z');
  });

  it('is a server certificate openssl accepts as its own trust anchor', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kata-cert-'));
    try {
      const file = path.join(dir, 'tls.crt');
      writeFileSync(file, pair.certPem);
      const out = execFileSync(
        'openssl',
        ['verify', '-purpose', 'sslserver', '-CAfile', file, file],
        { encoding: 'utf8', timeout: 10_000 },
      );
      expect(out.trim()).toBe(`${file}: OK`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is new each time: a fresh key and serial', () => {
    const again = new X509Certificate(
      selfSignedCertificate({ commonName: 'x', hosts: ['localhost'] }).certPem,
    );
    expect(again.serialNumber).not.toBe(cert.serialNumber);
    expect(again.publicKey.export({ format: 'jwk' })).not.toEqual(
      cert.publicKey.export({ format: 'jwk' }),
    );
  });
});

describe('the HTTPS probe server', () => {
  const pair = selfSignedCertificate({ commonName: 'test', hosts: ['127.0.0.1'] });
  const registry = new Registry();
  registry.setDefaultLabels({});
  const seen: (string | undefined)[] = [];
  const refused: AuthDecision[] = [];
  const decisions: Record<string, AuthDecision> = {
    'Bearer good': { status: 200, message: 'ok', username: 'prom' },
    'Bearer nope': {
      status: 403,
      message: 'Forbidden: user "x" may not get non-resource URL /metrics',
    },
  };
  let server: Server | undefined;
  const started = startProbeServer({
    port: 0,
    host: '127.0.0.1',
    registry,
    ready: () => true,
    secure: {
      cert: pair.certPem,
      key: pair.keyPem,
      authorize: (header) => {
        seen.push(header);
        if (header === 'Bearer broken') return Promise.reject(new Error('review exploded'));
        return Promise.resolve(
          (header ? decisions[header] : undefined) ?? {
            status: 401,
            message: 'Unauthorized: no token',
          },
        );
      },
      onRefused: (d) => refused.push(d),
    },
  }).then((s) => (server = s));
  afterAll(async () => {
    await started;
    await new Promise((r) => server?.close(r));
  });

  const get = async (
    p: string,
    token?: string,
  ): Promise<{ status: number; body: string; headers: Record<string, unknown> }> => {
    const s = await started;
    const addr = s.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: p,
          ca: pair.certPem,
          timeout: 5_000,
          headers: token ? { Authorization: token } : {},
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  };

  it('serves /metrics to an allowed token, over TLS verified against its certificate', async () => {
    const r = await get('/metrics', 'Bearer good');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe(registry.contentType);
  });

  it('refuses others with the decision as the body, and says so', async () => {
    const none = await get('/metrics');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer');
    expect(none.body).toBe('Unauthorized: no token\n');
    const forbidden = await get('/metrics', 'Bearer nope');
    expect(forbidden).toMatchObject({
      status: 403,
      body: 'Forbidden: user "x" may not get non-resource URL /metrics\n',
    });
    expect(refused.map((d) => d.status)).toEqual(expect.arrayContaining([401, 403]));
  });

  it('answers 500, not the metrics, when authorization itself fails', async () => {
    const r = await get('/metrics', 'Bearer broken');
    expect(r.status).toBe(500);
    expect(r.body).toMatch(/review exploded/);
    expect(r.body).not.toMatch(/# HELP/);
  });

  it('keeps /healthz and /readyz open: no authorization asked', async () => {
    const before = seen.length;
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    expect(seen.length).toBe(before);
  });
});

describe('the --metrics-* settings', () => {
  it('default to secure, for both components', () => {
    expect(controllerConfig([], {}, 'h').metricsSecure).toBe(true);
    expect(nodeAgentConfig(['--node-name', 'n'], {}).metricsSecure).toBe(true);
  });

  it('turn HTTPS off by flag, environment or (node agent) config file', () => {
    expect(controllerConfig(['--metrics-secure', 'false'], {}, 'h').metricsSecure).toBe(false);
    expect(controllerConfig([], { METRICS_SECURE: 'false' }, 'h').metricsSecure).toBe(false);
    expect(
      nodeAgentConfig(['--node-name', 'n', '--metrics-secure', 'false'], {}).metricsSecure,
    ).toBe(false);
    expect(
      nodeAgentConfig(['--node-name', 'n', '--config', 'f'], {}, () => ({ metricsSecure: false }))
        .metricsSecure,
    ).toBe(false);
  });

  it('refuse a value that is not true or false, naming the setting', () => {
    expect(() => controllerConfig(['--metrics-secure', 'yes'], {}, 'h')).toThrow(
      /--metrics-secure: "yes" must be true or false/,
    );
    expect(() => nodeAgentConfig(['--node-name', 'n'], { METRICS_SECURE: 'no' })).toThrow(
      /METRICS_SECURE: "no" is not true or false/,
    );
  });

  it('take a certificate and key together, and only for HTTPS', () => {
    const both = ['--metrics-cert-file', '/c.pem', '--metrics-key-file', '/k.pem'];
    expect(controllerConfig(both, {}, 'h')).toMatchObject({
      metricsCertFile: '/c.pem',
      metricsKeyFile: '/k.pem',
    });
    expect(nodeAgentConfig(['--node-name', 'n', ...both], {})).toMatchObject({
      metricsCertFile: '/c.pem',
      metricsKeyFile: '/k.pem',
    });
    expect(() => controllerConfig(['--metrics-cert-file', '/c.pem'], {}, 'h')).toThrow(
      /--metrics-cert-file and --metrics-key-file go together/,
    );
    expect(() => nodeAgentConfig(['--node-name', 'n', '--metrics-key-file', '/k.pem'], {})).toThrow(
      /go together/,
    );
    expect(() => controllerConfig([...both, '--metrics-secure', 'false'], {}, 'h')).toThrow(
      /cannot be used with --metrics-secure false/,
    );
  });
});

describe('startMetricsServer', () => {
  // No review is made below (/healthz only): the KubeConfig points nowhere.
  const kc = newKubeConfig();
  kc.loadFromClusterAndUser(
    { name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true },
    { name: 'u', token: 'x' },
  );
  const log = pino({ level: 'silent' });
  const servedFingerprint = (port: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()?.fingerprint256 ?? '');
        s.end();
      });
      s.on('error', reject);
    });

  it('plain HTTP binds loopback only', async () => {
    const m = await startMetricsServer({
      config: { metricsPort: 0, metricsSecure: false },
      kc,
      registry: new Registry(),
      ready: () => true,
      log,
      commonName: 'x',
    });
    try {
      expect(m.scheme).toBe('http');
      expect(m.server.address()).toMatchObject({ address: '127.0.0.1' });
    } finally {
      await new Promise((r) => m.server.close(r));
    }
  });

  it('HTTPS binds every address, and serves a certificate from files, following a rotation', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kata-metrics-cert-'));
    const certFile = path.join(dir, 'tls.crt');
    const keyFile = path.join(dir, 'tls.key');
    const write = (p: { certPem: string; keyPem: string }): string => {
      writeFileSync(certFile, p.certPem);
      writeFileSync(keyFile, p.keyPem);
      return new X509Certificate(p.certPem).fingerprint256;
    };
    const first = write(selfSignedCertificate({ commonName: 'first', hosts: ['127.0.0.1'] }));
    const m = await startMetricsServer({
      config: {
        metricsPort: 0,
        metricsSecure: true,
        metricsCertFile: certFile,
        metricsKeyFile: keyFile,
      },
      kc,
      registry: new Registry(),
      ready: () => true,
      log,
      commonName: 'x',
      certReloadMs: 50,
    });
    try {
      expect(m.scheme).toBe('https');
      expect(m.server.address()).toMatchObject({ address: '0.0.0.0' });
      expect(await servedFingerprint(m.port)).toBe(first);
      const second = write(selfSignedCertificate({ commonName: 'second', hosts: ['127.0.0.1'] }));
      let served = first;
      for (let i = 0; i < 100 && served !== second; i++) {
        await new Promise((r) => setTimeout(r, 50));
        served = await servedFingerprint(m.port);
      }
      expect(served).toBe(second);
    } finally {
      await new Promise((r) => m.server.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
