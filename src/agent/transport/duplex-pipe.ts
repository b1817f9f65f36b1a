import { finished, type Duplex } from 'node:stream';

/**
 * Pipes two duplexes into each other, half-close included (one side's end ends the other's
 * writable side). If either fails or closes before ending cleanly, the other is destroyed too, so
 * a dead yamux stream never leaves a hanging socket (and vice versa).
 */
export function pipeDuplex(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const propagate = (from: Duplex, to: Duplex) =>
    finished(from, (err) => {
      if (err && !to.destroyed) to.destroy();
    });
  propagate(a, b);
  propagate(b, a);
}
