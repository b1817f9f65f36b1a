// The leak audit's judgement: what the observer saw on the host + which sandboxes are live →
// leftovers by kind, each with its uid, where it is and why it is one. Pure.
import { HOST_WIDE_KINDS, KIND_EXPLANATIONS, LEAK_KINDS, type LeakKind } from './kinds.js';

/** One thing on the host made for the sandbox `uid`. */
export interface HostObject {
  kind: LeakKind;
  uid: string;
  /** A path, or `<name> in <namespace>`, or the QEMU's pid file. */
  where: string;
  pid?: number;
}

/**
 * What the observer saw of one kind in one place: `checked` false when it could not look there
 * (the place does not exist, a tool failed, the kind is turned off); `note` says why.
 */
export interface KindObservation {
  kind: LeakKind;
  place: string;
  checked: boolean;
  note?: string;
  objects: HostObject[];
}

export interface LiveSet {
  /** Where the live uids came from (shown in the report). */
  source: string;
  uids: ReadonlySet<string>;
}

export interface Leftover extends HostObject {
  why: string;
}

export type KindStatus = 'clean' | 'leftovers' | 'unchecked';

export interface KindReport {
  kind: LeakKind;
  /** unchecked: nothing could be looked at; clean says nothing about an unchecked kind. */
  status: KindStatus;
  /** Places looked at. */
  checked: string[];
  /** Places not looked at, with why. */
  unchecked: Array<{ place: string; why: string }>;
  /** Objects of live sandboxes seen (not leftovers). */
  owned: number;
  /** Host-wide objects not judged: their uid is unknown to this agent's roots (--host-wide known). */
  notJudged: number;
  leftovers: Leftover[];
}

export interface AuditReport {
  live: { source: string; uids: string[] };
  kinds: KindReport[];
  leftovers: number;
}

export interface ClassifyOptions {
  /** all: judge every host-wide object; known: only those whose uid this agent's roots know. */
  hostWide: 'all' | 'known';
  /** Kinds to report (default all). */
  kinds?: readonly LeakKind[];
}

function whyLeftover(o: HostObject, live: LiveSet): string {
  return `no live sandbox has uid ${o.uid} (live set: ${live.source}); ${KIND_EXPLANATIONS[o.kind].leftover}`;
}

export function classify(
  observations: readonly KindObservation[],
  live: LiveSet,
  opts: ClassifyOptions,
): AuditReport {
  const kinds = opts.kinds ?? LEAK_KINDS;
  // Uids this node agent's own roots hold something of (what --host-wide known trusts).
  const known = new Set(
    observations
      .filter((o) => !HOST_WIDE_KINDS.has(o.kind))
      .flatMap((o) => o.objects.map((x) => x.uid)),
  );
  const reports = kinds.map((kind): KindReport => {
    const mine = observations.filter((o) => o.kind === kind);
    const report: KindReport = {
      kind,
      status: 'clean',
      checked: mine.filter((o) => o.checked).map((o) => o.place),
      unchecked: mine
        .filter((o) => !o.checked)
        .map((o) => ({ place: o.place, why: o.note ?? 'not looked at' })),
      owned: 0,
      notJudged: 0,
      leftovers: [],
    };
    const objects = mine.flatMap((m) => (m.checked ? m.objects : []));
    for (const o of objects) {
      const twin = kind === 'qemu' ? objects.filter((x) => x.uid === o.uid) : [];
      if (twin.length > 1) {
        // A sandbox runs one VM: more than one means all but one are orphans (whichever its
        // state file records is its own; the audit does not guess which).
        const pids = twin.map((x) => x.pid).join(', ');
        report.leftovers.push({
          ...o,
          why: `${twin.length} QEMUs (pids ${pids}) run for uid ${o.uid}; a sandbox has one VM`,
        });
      } else if (live.uids.has(o.uid)) report.owned++;
      else if (opts.hostWide === 'known' && HOST_WIDE_KINDS.has(kind) && !known.has(o.uid)) {
        report.notJudged++;
      } else report.leftovers.push({ ...o, why: whyLeftover(o, live) });
    }
    report.leftovers.sort((a, b) => a.uid.localeCompare(b.uid) || a.where.localeCompare(b.where));
    report.status =
      report.leftovers.length > 0 ? 'leftovers' : report.checked.length > 0 ? 'clean' : 'unchecked';
    return report;
  });
  return {
    live: { source: live.source, uids: [...live.uids].sort() },
    kinds: reports,
    leftovers: reports.reduce((n, r) => n + r.leftovers.length, 0),
  };
}

/** 0: nothing left over; 1: leftovers (exit codes of kata-leak-audit; 2 is an error). Pure. */
export function auditExitCode(report: AuditReport): 0 | 1 {
  return report.leftovers > 0 ? 1 : 0;
}
