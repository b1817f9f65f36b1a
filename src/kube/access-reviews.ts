// TokenReview and SubjectAccessReview against the API server, each with a deadline: the calls
// behind the /metrics filter (src/observability/metrics-auth.ts). The component's own
// ServiceAccount needs `create` on both (deploy/rbac).
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { AccessReviewResult, AccessReviews, UserInfo } from '../observability/metrics-auth.js';
import { callApi } from './kube-client.js';

/** Default deadline of one review call: well inside Prometheus' 10 s scrape timeout. */
export const REVIEW_TIMEOUT_MS = 5_000;

export function kubeAccessReviews(kc: KubeConfig, timeoutMs = REVIEW_TIMEOUT_MS): AccessReviews {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  return {
    async reviewToken(token) {
      const r = await callApi(
        'create TokenReview',
        () =>
          authn.createTokenReview({
            body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
          }),
        { timeoutMs },
      );
      const u = r.status?.user;
      return {
        authenticated: r.status?.authenticated === true,
        ...(u?.username && {
          user: {
            username: u.username,
            ...(u.uid && { uid: u.uid }),
            ...(u.groups && { groups: u.groups }),
            ...(u.extra && { extra: u.extra }),
          },
        }),
        ...(r.status?.error && { error: r.status.error }),
      };
    },
    async reviewAccess(user, path, verb) {
      const r = await callApi(
        'create SubjectAccessReview',
        () =>
          authz.createSubjectAccessReview({
            body: {
              apiVersion: 'authorization.k8s.io/v1',
              kind: 'SubjectAccessReview',
              spec: {
                user: user.username,
                ...(user.uid && { uid: user.uid }),
                ...(user.groups && { groups: user.groups }),
                ...(user.extra && { extra: user.extra }),
                nonResourceAttributes: { path, verb },
              },
            },
          }),
        { timeoutMs },
      );
      return {
        allowed: r.status?.allowed === true,
        ...(r.status?.reason && { reason: r.status.reason }),
        ...(r.status?.evaluationError && { evaluationError: r.status.evaluationError }),
      };
    },
  };
}

/** The user of a bound token issued for one of `audiences`; undefined when not authenticated. */
export async function reviewBoundToken(
  kc: KubeConfig,
  token: string,
  audiences: string[],
  timeoutMs = REVIEW_TIMEOUT_MS,
): Promise<{ username: string; groups: string[] } | undefined> {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const r = await callApi(
    'create TokenReview',
    () =>
      authn.createTokenReview({
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token, audiences },
        },
      }),
    { timeoutMs },
  );
  const u = r.status?.user;
  if (r.status?.authenticated !== true || !u?.username) return undefined;
  return { username: u.username, groups: u.groups ?? [] };
}

export interface ResourceAttributes {
  namespace: string;
  verb: string;
  group: string;
  resource: string;
  subresource: string;
  name: string;
}

/** SubjectAccessReview of `user` on one resource's subresource. */
export async function reviewResourceAccess(
  kc: KubeConfig,
  user: UserInfo,
  attrs: ResourceAttributes,
  timeoutMs = REVIEW_TIMEOUT_MS,
): Promise<AccessReviewResult> {
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const r = await callApi(
    'create SubjectAccessReview',
    () =>
      authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            ...(user.uid && { uid: user.uid }),
            ...(user.groups && { groups: user.groups }),
            ...(user.extra && { extra: user.extra }),
            resourceAttributes: attrs,
          },
        },
      }),
    { timeoutMs },
  );
  return {
    allowed: r.status?.allowed === true,
    ...(r.status?.reason && { reason: r.status.reason }),
    ...(r.status?.evaluationError && { evaluationError: r.status.evaluationError }),
  };
}
