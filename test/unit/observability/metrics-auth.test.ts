// The /metrics filter's decisions, with fakes of the TokenReview and SubjectAccessReview calls:
// who gets 200, 401, 403 or 500, and what the cache saves and forgets.
import { describe, expect, it } from '@jest/globals';
import {
  bearerToken,
  MetricsAuthorizer,
  type AccessReviewResult,
  type AccessReviews,
  type TokenReviewResult,
  type UserInfo,
} from '../../../src/observability/metrics-auth.js';

const PROMETHEUS: UserInfo = {
  username: 'system:serviceaccount:monitoring:prometheus',
  uid: 'u-1',
  groups: ['system:serviceaccounts', 'system:authenticated'],
};

/** Fake reviews: tokens map to users; `allowed` lists the usernames SubjectAccessReview allows. */
class FakeReviews implements AccessReviews {
  tokenCalls: string[] = [];
  accessCalls: { user: UserInfo; path: string; verb: string }[] = [];
  tokenFailure?: Error;
  accessFailure?: Error;
  constructor(
    readonly users: Record<string, UserInfo>,
    readonly allowed: Set<string>,
  ) {}
  reviewToken(token: string): Promise<TokenReviewResult> {
    this.tokenCalls.push(token);
    if (this.tokenFailure) return Promise.reject(this.tokenFailure);
    const user = this.users[token];
    return Promise.resolve(
      user
        ? { authenticated: true, user }
        : { authenticated: false, error: 'invalid bearer token' },
    );
  }
  reviewAccess(user: UserInfo, path: string, verb: string): Promise<AccessReviewResult> {
    this.accessCalls.push({ user, path, verb });
    if (this.accessFailure) return Promise.reject(this.accessFailure);
    return Promise.resolve(
      this.allowed.has(user.username)
        ? { allowed: true }
        : { allowed: false, reason: 'no RBAC policy matched' },
    );
  }
}

function setup(opts: { maxEntries?: number } = {}) {
  const reviews = new FakeReviews(
    {
      'prom-token': PROMETHEUS,
      'other-token': { username: 'system:serviceaccount:default:default' },
    },
    new Set([PROMETHEUS.username]),
  );
  let now = 1_000_000;
  const auth = new MetricsAuthorizer({
    reviews,
    allowedTtlMs: 60_000,
    deniedTtlMs: 10_000,
    now: () => now,
    ...opts,
  });
  return { reviews, auth, advance: (ms: number) => (now += ms) };
}

describe('bearerToken', () => {
  it('takes the token of a Bearer header only', () => {
    expect(bearerToken('Bearer abc.def')).toBe('abc.def');
    expect(bearerToken('bearer abc')).toBe('abc');
    expect(bearerToken('Basic dXNlcjpwYXNz')).toBeUndefined();
    expect(bearerToken('Bearer ')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });
});

describe('MetricsAuthorizer decisions', () => {
  it('allows a token whose user may get /metrics, passing user, groups and extra to the SubjectAccessReview', async () => {
    const { auth, reviews } = setup();
    const d = await auth.decide('Bearer prom-token', '/metrics');
    expect(d).toMatchObject({ status: 200, username: PROMETHEUS.username });
    expect(reviews.accessCalls).toEqual([{ user: PROMETHEUS, path: '/metrics', verb: 'get' }]);
  });

  it('answers 401 without any review when there is no bearer token', async () => {
    const { auth, reviews } = setup();
    for (const header of [undefined, '', 'Basic dXNlcjpwYXNz']) {
      const d = await auth.decide(header, '/metrics');
      expect(d.status).toBe(401);
      expect(d.message).toMatch(/needs a bearer token/);
    }
    expect(reviews.tokenCalls).toEqual([]);
  });

  it('answers 401 to a token TokenReview does not accept, with its reason', async () => {
    const { auth, reviews } = setup();
    const d = await auth.decide('Bearer garbage', '/metrics');
    expect(d).toEqual({
      status: 401,
      message: 'Unauthorized: the token was not accepted by TokenReview (invalid bearer token)',
    });
    expect(reviews.accessCalls).toEqual([]);
  });

  it('answers 403 naming the user and the URL when SubjectAccessReview says no', async () => {
    const { auth } = setup();
    const d = await auth.decide('Bearer other-token', '/metrics');
    expect(d.status).toBe(403);
    expect(d.message).toBe(
      'Forbidden: user "system:serviceaccount:default:default" may not get non-resource URL /metrics (no RBAC policy matched)',
    );
  });

  it('answers 500 when either review call fails, and never caches it', async () => {
    const { auth, reviews } = setup();
    reviews.tokenFailure = new Error('create TokenReview: timed out after 5000 ms');
    expect(await auth.decide('Bearer prom-token', '/metrics')).toMatchObject({
      status: 500,
      message:
        'Internal Server Error: TokenReview failed: create TokenReview: timed out after 5000 ms',
    });
    reviews.tokenFailure = undefined;
    reviews.accessFailure = new Error('connection refused');
    expect(await auth.decide('Bearer prom-token', '/metrics')).toMatchObject({
      status: 500,
      message: 'Internal Server Error: SubjectAccessReview failed: connection refused',
    });
    reviews.accessFailure = undefined;
    // The API answers again: the next request is reviewed afresh and allowed.
    expect((await auth.decide('Bearer prom-token', '/metrics')).status).toBe(200);
    expect(reviews.tokenCalls.length).toBe(3);
  });
});

describe('MetricsAuthorizer cache', () => {
  it('reuses an allowed decision for its TTL, then reviews again', async () => {
    const { auth, reviews, advance } = setup();
    for (let i = 0; i < 4; i++) {
      expect((await auth.decide('Bearer prom-token', '/metrics')).status).toBe(200);
      advance(15_000); // a scrape every 15 s
    }
    // Scrapes at 0, 15, 30, 45 s: one review pair.
    expect(auth.reviewCalls).toBe(2);
    advance(1); // 61 s after the first review
    expect((await auth.decide('Bearer prom-token', '/metrics')).status).toBe(200);
    expect(auth.reviewCalls).toBe(4);
    expect(reviews.tokenCalls).toEqual(['prom-token', 'prom-token']);
  });

  it('keeps denials for the shorter TTL, so a permission granted later counts soon', async () => {
    const { auth, reviews, advance } = setup();
    expect((await auth.decide('Bearer other-token', '/metrics')).status).toBe(403);
    reviews.allowed.add('system:serviceaccount:default:default');
    advance(5_000);
    expect((await auth.decide('Bearer other-token', '/metrics')).status).toBe(403);
    advance(5_001);
    expect((await auth.decide('Bearer other-token', '/metrics')).status).toBe(200);
  });

  it('shares one review among concurrent requests with the same token', async () => {
    const { auth, reviews } = setup();
    const ds = await Promise.all(
      Array.from({ length: 5 }, () => auth.decide('Bearer prom-token', '/metrics')),
    );
    expect(ds.map((d) => d.status)).toEqual([200, 200, 200, 200, 200]);
    expect(reviews.tokenCalls.length).toBe(1);
  });

  it('keys on the token and the path: another token or path is reviewed on its own', async () => {
    const { auth, reviews } = setup();
    await auth.decide('Bearer prom-token', '/metrics');
    await auth.decide('Bearer other-token', '/metrics');
    await auth.decide('Bearer prom-token', '/metrics/extra');
    expect(reviews.tokenCalls.length).toBe(3);
    expect(reviews.accessCalls.map((c) => c.path)).toEqual([
      '/metrics',
      '/metrics',
      '/metrics/extra',
    ]);
  });

  it('holds at most maxEntries tokens, dropping the oldest', async () => {
    const { auth, reviews } = setup({ maxEntries: 3 });
    for (let i = 0; i < 10; i++) await auth.decide(`Bearer garbage-${i}`, '/metrics');
    expect(auth.size).toBe(3);
    // The newest is still cached, the first is not.
    await auth.decide('Bearer garbage-9', '/metrics');
    expect(reviews.tokenCalls.length).toBe(10);
    await auth.decide('Bearer garbage-0', '/metrics');
    expect(reviews.tokenCalls.length).toBe(11);
  });
});
