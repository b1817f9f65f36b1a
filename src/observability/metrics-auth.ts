// Who may read /metrics: the bearer token's user (TokenReview) must be allowed `get` on the
// non-resource URL (SubjectAccessReview), as controller-runtime's
// filters.WithAuthenticationAndAuthorization decides. Decisions are cached briefly per token and
// path, so a scrape every 15 s costs two API calls about once a minute, not every time; a review
// that fails is a 500 and is never cached or taken as a yes.
import { createHash } from 'node:crypto';

export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface TokenReviewResult {
  authenticated: boolean;
  user?: UserInfo;
  /** The API server's reason for not authenticating, if it gave one. */
  error?: string;
}

export interface AccessReviewResult {
  allowed: boolean;
  reason?: string;
  evaluationError?: string;
}

/** The two review calls (TokenReview, SubjectAccessReview); they throw when the API cannot answer. */
export interface AccessReviews {
  reviewToken(token: string): Promise<TokenReviewResult>;
  reviewAccess(user: UserInfo, path: string, verb: string): Promise<AccessReviewResult>;
}

export interface AuthDecision {
  status: 200 | 401 | 403 | 500;
  /** The response body when not 200: what was refused and why. */
  message: string;
  username?: string;
}

export interface MetricsAuthOptions {
  reviews: AccessReviews;
  /** How long a 200 is reused. Default 60 s: a revoked permission stops working within that. */
  allowedTtlMs?: number;
  /** How long a 401/403 is reused. Default 10 s. */
  deniedTtlMs?: number;
  /** Tokens remembered at most (the oldest go first). Default 256. */
  maxEntries?: number;
  now?: () => number;
}

export const METRICS_AUTH_DEFAULTS = { allowedTtlMs: 60_000, deniedTtlMs: 10_000, maxEntries: 256 };

interface Entry {
  decision: Promise<AuthDecision>;
  /** Set once the decision is known; until then the entry is shared by concurrent requests. */
  expiresAt: number;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The token of an Authorization header, or undefined when there is none. Pure. */
export function bearerToken(header: string | undefined): string | undefined {
  return header ? BEARER.exec(header)?.[1] : undefined;
}

export class MetricsAuthorizer {
  private readonly cache = new Map<string, Entry>();
  private readonly reviews: AccessReviews;
  private readonly allowedTtlMs: number;
  private readonly deniedTtlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Review calls made (both kinds), for the cost figures. */
  reviewCalls = 0;

  constructor(opts: MetricsAuthOptions) {
    this.reviews = opts.reviews;
    this.allowedTtlMs = opts.allowedTtlMs ?? METRICS_AUTH_DEFAULTS.allowedTtlMs;
    this.deniedTtlMs = opts.deniedTtlMs ?? METRICS_AUTH_DEFAULTS.deniedTtlMs;
    this.maxEntries = Math.max(1, opts.maxEntries ?? METRICS_AUTH_DEFAULTS.maxEntries);
    this.now = opts.now ?? Date.now;
  }

  /** The decision for a request with this Authorization header on `path` (verb get). */
  decide(authorization: string | undefined, path: string): Promise<AuthDecision> {
    const token = bearerToken(authorization);
    if (!token) {
      return Promise.resolve({
        status: 401,
        message: `Unauthorized: ${path} needs a bearer token (Authorization: Bearer <ServiceAccount token>)`,
      });
    }
    // The token itself is never kept: its hash is the key.
    const key = `${createHash('sha256').update(token).digest('hex')} ${path}`;
    const now = this.now();
    const hit = this.cache.get(key);
    if (hit && (hit.expiresAt === Infinity || hit.expiresAt > now)) return hit.decision;
    if (hit) this.cache.delete(key);
    this.evict(now);
    const entry: Entry = { decision: this.review(token, path), expiresAt: Infinity };
    this.cache.set(key, entry);
    entry.decision.then(
      (d) => {
        if (d.status === 500) this.cache.delete(key);
        else
          entry.expiresAt = this.now() + (d.status === 200 ? this.allowedTtlMs : this.deniedTtlMs);
      },
      () => this.cache.delete(key),
    );
    return entry.decision;
  }

  /** Entries cached (known or in flight). */
  get size(): number {
    return this.cache.size;
  }

  private evict(now: number): void {
    if (this.cache.size < this.maxEntries) return;
    for (const [k, e] of this.cache) if (e.expiresAt <= now) this.cache.delete(k);
    // Still full: the oldest inserted go first (Map keeps insertion order).
    for (const k of this.cache.keys()) {
      if (this.cache.size < this.maxEntries) break;
      this.cache.delete(k);
    }
  }

  private async review(token: string, path: string): Promise<AuthDecision> {
    let authn: TokenReviewResult;
    try {
      this.reviewCalls++;
      authn = await this.reviews.reviewToken(token);
    } catch (err) {
      return { status: 500, message: `Internal Server Error: TokenReview failed: ${errText(err)}` };
    }
    if (!authn.authenticated || !authn.user) {
      return {
        status: 401,
        message: `Unauthorized: the token was not accepted by TokenReview${authn.error ? ` (${authn.error})` : ''}`,
      };
    }
    const user = authn.user;
    let authz: AccessReviewResult;
    try {
      this.reviewCalls++;
      authz = await this.reviews.reviewAccess(user, path, 'get');
    } catch (err) {
      return {
        status: 500,
        message: `Internal Server Error: SubjectAccessReview failed: ${errText(err)}`,
        username: user.username,
      };
    }
    if (authz.allowed) return { status: 200, message: 'ok', username: user.username };
    const why = authz.reason || authz.evaluationError;
    return {
      status: 403,
      message: `Forbidden: user "${user.username}" may not get non-resource URL ${path}${why ? ` (${why})` : ''}`,
      username: user.username,
    };
  }
}

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
