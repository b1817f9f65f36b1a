// The image cache's metrics (prefix kata_node_image_), registered on a registry the caller owns:
// the node agent passes the registry of nodeAgentMetrics().
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export function registerImageMetrics(registry: Registry) {
  let bytes = 0;
  let images = 0;
  return {
    pulls: new Counter({
      name: 'kata_node_image_pulls_total',
      help: 'Image pulls that contacted a registry, by result (success, not_found, unauthorized, unreachable, tls, timeout, too_many_requests, canceled, other).',
      labelNames: ['result'],
      registers: [registry],
    }),
    pullSeconds: new Histogram({
      name: 'kata_node_image_pull_duration_seconds',
      help: 'Successful image pulls: registry resolve, download and unpack.',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    cacheHits: new Counter({
      name: 'kata_node_image_cache_hits_total',
      help: 'Images handed to a sandbox from the node cache without downloading it.',
      registers: [registry],
    }),
    cacheBytes: new Gauge({
      name: 'kata_node_image_cache_bytes',
      help: 'Disk used by unpacked images in the node cache.',
      registers: [registry],
      collect() {
        this.set(bytes);
      },
    }),
    cacheImages: new Gauge({
      name: 'kata_node_image_cache_images',
      help: 'Images in the node cache.',
      registers: [registry],
      collect() {
        this.set(images);
      },
    }),
    /** Called by the store whenever its content changes. */
    setCache(totalBytes: number, count: number): void {
      bytes = totalBytes;
      images = count;
    },
  };
}

export type ImageMetrics = ReturnType<typeof registerImageMetrics>;
