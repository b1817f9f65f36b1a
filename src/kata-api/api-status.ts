// Errors as the Kubernetes API returns them (a metav1 Status), so kubectl prints
// "Error from server (Forbidden): ..." and exits 1 as for any other resource.
import type { ServerResponse } from 'node:http';
import { SUBRESOURCE_GROUP } from '../subresources/contract.js';

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  500: 'InternalError',
  501: 'NotImplemented',
  502: 'InternalError',
  503: 'ServiceUnavailable',
};

export interface StatusDetails {
  name?: string;
  kind?: string;
}

/** A metav1 Status object. Pure. */
export function apiStatus(code: number, message: string, details?: StatusDetails): object {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: REASONS[code] ?? 'Unknown',
    ...(details && { details: { ...details, group: SUBRESOURCE_GROUP } }),
    code,
  };
}

export function writeStatus(
  res: ServerResponse,
  code: number,
  message: string,
  details?: StatusDetails,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(code, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(apiStatus(code, message, details)));
}
