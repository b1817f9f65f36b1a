// The settings both components share for serving /metrics (flags --metrics-*, see each one's
// --help), and their one cross-field rule.
export interface MetricsServingConfig {
  metricsPort: number;
  /** false: plain HTTP on loopback, no authentication. */
  metricsSecure: boolean;
  /** PEM files of the serving certificate and its key; both or neither. */
  metricsCertFile?: string;
  metricsKeyFile?: string;
}

/** Why a cert/key setting is unusable, naming it; undefined when fine. Pure. */
export function metricsCertProblem(c: MetricsServingConfig): string | undefined {
  if (Boolean(c.metricsCertFile) !== Boolean(c.metricsKeyFile)) {
    return '--metrics-cert-file and --metrics-key-file go together: set both or neither';
  }
  if (!c.metricsSecure && c.metricsCertFile) {
    return '--metrics-cert-file is for HTTPS: it cannot be used with --metrics-secure false';
  }
  return undefined;
}
