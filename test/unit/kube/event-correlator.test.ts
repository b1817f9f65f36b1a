import { describe, expect, it } from '@jest/globals';
import {
  EventCorrelator,
  eventKey,
  eventName,
  truncateNote,
} from '../../../src/kube/event-correlator.js';

const ev = (note = 'no node fits') => ({
  regarding: { kind: 'KataSandbox', namespace: 'default', name: 'web', uid: 'u1' },
  type: 'Warning' as const,
  reason: 'Unschedulable',
  action: 'Schedule',
  note,
});

describe('eventKey', () => {
  it('is equal for identical events and differs when any field differs', () => {
    expect(eventKey(ev())).toBe(eventKey(ev()));
    expect(eventKey(ev('other'))).not.toBe(eventKey(ev()));
    expect(eventKey({ ...ev(), type: 'Normal' })).not.toBe(eventKey(ev()));
  });
});

describe('EventCorrelator', () => {
  it('counts repeats within the window as one series', () => {
    const c = new EventCorrelator(1000);
    expect(c.observe('k', 'default', 0).kind).toBe('new');
    const r = c.observe('k', 'default', 500);
    expect(r).toMatchObject({ kind: 'repeat', entry: { count: 2, firstSeen: 0, lastSeen: 500 } });
    expect(c.observe('k', 'default', 1400)).toMatchObject({ kind: 'repeat', entry: { count: 3 } });
  });

  it('starts a new Event after a quiet window', () => {
    const c = new EventCorrelator(1000);
    c.observe('k', 'default', 0);
    expect(c.observe('k', 'default', 1001)).toMatchObject({ kind: 'new', entry: { count: 1 } });
  });

  it('evicts the least recently seen entries beyond its bound', () => {
    const c = new EventCorrelator(1000, 2);
    c.observe('a', 'ns', 0);
    c.observe('b', 'ns', 1);
    c.observe('a', 'ns', 2);
    c.observe('c', 'ns', 3);
    expect(c.size).toBe(2);
    expect(c.observe('a', 'ns', 4).kind).toBe('repeat');
    expect(c.observe('b', 'ns', 5).kind).toBe('new');
  });
});

describe('event helpers', () => {
  it('bounds notes to 1 KiB on a character boundary', () => {
    expect(truncateNote('short')).toBe('short');
    const long = 'é'.repeat(1000);
    const t = truncateNote(long);
    expect(Buffer.byteLength(t)).toBeLessThanOrEqual(1024);
    expect(t.endsWith('...')).toBe(true);
    expect(t).not.toContain('\uFFFD');
  });

  it('names events <object>.<hex nanoseconds>', () => {
    expect(eventName('web', 1, 0)).toBe('web.f4240');
    expect(eventName('web', 1, 1)).toBe('web.f4241');
  });
});
