import { describe, expect, it } from '@jest/globals';
import { parseApiPath } from '../../../src/kata-api/request-path.js';
import { apiStatus } from '../../../src/kata-api/api-status.js';
import { chooseContainer, forbiddenMessage } from '../../../src/kata-api/api-handler.js';
import { apiResourceList } from '../../../src/kata-api/discovery.js';
import {
  logOptionsQuery,
  parseLogOptions,
  sinceMs,
} from '../../../src/subresources/log-options.js';

const P = '/apis/subresources.kata.sandbox.io/v1alpha1';

describe('kata-api requests', () => {
  it('parses its paths and nothing else', () => {
    expect(parseApiPath(P)).toEqual({ kind: 'discovery' });
    expect(parseApiPath(`${P}/namespaces/ns/katasandboxes/web.1/log`)).toEqual({
      kind: 'subresource',
      namespace: 'ns',
      name: 'web.1',
      subresource: 'log',
    });
    for (const bad of [
      `${P}/namespaces/ns/katasandboxes/web/proxy`,
      `${P}/namespaces/NS/katasandboxes/web/log`,
      `${P}/namespaces/ns/pods/web/log`,
      `${P}/namespaces/ns/katasandboxes/../log`,
      '/apis/kata.sandbox.io/v1alpha1',
    ]) {
      expect({ bad, kind: parseApiPath(bad).kind }).toEqual({ bad, kind: 'unknown' });
    }
  });

  it('parses log options as Pods do, naming a bad one', () => {
    const q = (s: string) => parseLogOptions(new URLSearchParams(s));
    expect(q('container=main&follow=true&tailLines=0&limitBytes=10&previous=1')).toEqual({
      ok: true,
      value: {
        container: 'main',
        follow: true,
        previous: true,
        timestamps: false,
        tailLines: 0,
        limitBytes: 10,
      },
    });
    expect(q('')).toEqual({
      ok: true,
      value: { follow: false, previous: false, timestamps: false },
    });
    expect(q('tailLines=-1')).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^tailLines:/),
    });
    expect(q('limitBytes=0')).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^limitBytes:/),
    });
    expect(q('follow=yes')).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^follow:/),
    });
    expect(q('container=Main')).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^container:/),
    });
    expect(q('timestamps=true&sinceSeconds=5')).toMatchObject({
      ok: true,
      value: { timestamps: true, sinceSeconds: 5 },
    });
    expect(q('sinceTime=2026-12-04T10:00:00Z')).toMatchObject({
      ok: true,
      value: { sinceTime: '2026-12-04T10:00:00Z' },
    });
    expect(q('sinceSeconds=0')).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^sinceSeconds:/),
    });
    expect(q('sinceTime=yesterday')).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^sinceTime:/),
    });
    expect(q('sinceSeconds=5&sinceTime=2026-12-04T10:00:00Z')).toMatchObject({
      ok: false,
      message: expect.stringMatching(/^sinceSeconds, sinceTime: at most one/),
    });
    expect(
      sinceMs({ follow: false, previous: false, timestamps: false, sinceSeconds: 5 }, 10_000),
    ).toBe(5_000);
    expect(
      sinceMs(
        { follow: false, previous: false, timestamps: false, sinceTime: '1970-01-01T00:00:02Z' },
        10_000,
      ),
    ).toBe(2_000);
    const round = q(
      'container=c&follow=true&tailLines=3&timestamps=1&sinceTime=2026-12-04T10:00:00.5Z',
    );
    if (!round.ok) throw new Error(round.message);
    expect(q(logOptionsQuery(round.value))).toEqual(round);
  });

  it('defaults the container only when there is one, as kubectl logs does', () => {
    expect(chooseContainer(['main'], undefined, 'web')).toEqual({ ok: true, name: 'main' });
    expect(chooseContainer(['a', 'b'], 'b', 'web')).toEqual({ ok: true, name: 'b' });
    expect(chooseContainer(['a', 'b'], undefined, 'web')).toEqual({
      ok: false,
      message: 'a container name must be specified for katasandbox web, choose one of: [a b]',
    });
    expect(chooseContainer(['a'], 'z', 'web')).toMatchObject({ ok: false });
  });

  it("answers errors as Kubernetes Status objects and refusals in kube-apiserver's words", () => {
    expect(apiStatus(403, 'no', { name: 'web', kind: 'katasandboxes/exec' })).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'no',
      reason: 'Forbidden',
      details: { name: 'web', kind: 'katasandboxes/exec', group: 'subresources.kata.sandbox.io' },
      code: 403,
    });
    expect(forbiddenMessage('bob', 'create', 'exec', 'ns', 'web')).toBe(
      'katasandboxes.subresources.kata.sandbox.io "web" is forbidden: User "bob" cannot create ' +
        'resource "katasandboxes/exec" in API group "subresources.kata.sandbox.io" in the namespace "ns"',
    );
  });

  it('discovers the four subresources with the verbs the user roles grant', () => {
    expect(apiResourceList()).toMatchObject({
      groupVersion: 'subresources.kata.sandbox.io/v1alpha1',
      resources: [
        { name: 'katasandboxes/log', namespaced: true, verbs: ['get'] },
        { name: 'katasandboxes/exec', verbs: ['get', 'create'] },
        { name: 'katasandboxes/attach', verbs: ['get', 'create'] },
        { name: 'katasandboxes/console', verbs: ['get', 'create'] },
      ],
    });
  });
});
