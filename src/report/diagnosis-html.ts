import type { Diagnosis, DiagnosedRole } from './diagnosis.js';
import type { RunRecord } from './record.js';
import { PALETTE, escapeHtml as esc, heatmap, reliabilityDiagram } from './svg.js';

const ROLES: DiagnosedRole[] = ['teacher', 'student-alone', 'student-distilled'];

/**
 * The report's diagnosis: fidelity of each student to the teacher, calibration with a reliability diagram, per-class
 * test accuracy, the distilled student's confusion matrix, and the hints with the numbers behind them. Renders a
 * record read back from JSON too (NaN arrives as null, fields may be missing).
 */
export function diagnosisSection(record: RunRecord): string {
  const d = record.diagnosis as Diagnosis | undefined;
  if (!d || typeof d !== 'object') return '';
  const colorOf = (role: DiagnosedRole) => {
    const i = (record.models ?? []).findIndex((m) => m.role === role);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length]!;
  };
  const parts: string[] = ['<section>', '<h2>Diagnosis</h2>'];
  const hints = Array.isArray(d.hints) ? d.hints : [];
  if (hints.length > 0) {
    parts.push('<ul class="lines">');
    for (const h of hints) {
      const ev = Object.entries(h.evidence ?? {}).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
      parts.push(`<li><b>${esc(String(h.code))}</b>: ${esc(String(h.text))}${ev ? ` <span class="note">(${esc(ev)})</span>` : ''}</li>`);
    }
    parts.push('</ul>');
  }
  const fid = ROLES.filter((r) => d.fidelity?.[r]);
  if (fid.length > 0) {
    parts.push('<h3>Fidelity to the teacher</h3>', table(['student', 'agreement (validation)', 'agreement (test)', 'KL(teacher ‖ student) validation', 'KL test'], fid.map((r) => {
      const f = d.fidelity[r]!;
      return [r, pct(f.validation?.agreement), pct(f.test?.agreement), fmt(f.validation?.kl), fmt(f.test?.kl)];
    })));
    parts.push('<p class="note">Agreement: share of samples on which the student\'s top class is the teacher\'s. KL at T = 1, in nats, mean over samples.</p>');
  }
  const cal = ROLES.filter((r) => d.calibration?.[r]);
  if (cal.length > 0) {
    parts.push('<h3>Calibration</h3>', table(['model', 'ECE (validation)', 'ECE (test)'], cal.map((r) => [r, fmt(d.calibration[r]!.validation?.ece), fmt(d.calibration[r]!.test?.ece)])));
    const soft = (d.softTargets ?? []).map((s) => `T = ${s.temperature}: mean top probability ${fmt(s.meanMaxProb)}`);
    if (soft.length > 0) parts.push(`<p class="note">The teacher's soft targets on the validation split: ${esc(soft.join('; '))}.</p>`);
    parts.push(
      '<div class="plots"><figure>',
      reliabilityDiagram({
        title: 'Reliability on the test split (15 bins)',
        series: cal.map((r) => ({ name: r, color: colorOf(r), ece: numOr(d.calibration[r]!.test?.ece), bins: (d.calibration[r]!.test?.bins ?? []).map((b) => ({ ...b, confidence: numOr(b.confidence), accuracy: numOr(b.accuracy) })) })),
      }),
      '</figure>',
    );
    const conf = d.confusion;
    const names = d.perClass?.classNames ?? [];
    if (conf && Array.isArray(conf.matrix) && names.length > 0) {
      parts.push(
        '<figure>',
        heatmap({
          title: `Confusion matrix of the ${conf.role} on the test split`,
          rowLabels: names,
          colLabels: names,
          values: conf.matrix.map((row) => row.map(numOr)),
          rowTitle: 'true class',
          colTitle: 'predicted class',
          format: (v) => String(Math.round(v)),
        }),
        '</figure>',
      );
    }
    parts.push('</div>');
  }
  const pc = d.perClass;
  const present = ROLES.filter((r) => Array.isArray(pc?.accuracy?.[r]));
  if (pc && present.length > 0) {
    const delta = present.includes('student-alone') && present.includes('student-distilled');
    const rows = (pc.classNames ?? []).map((name, k) => {
      const cells = present.map((r) => pct(pc.accuracy[r]![k]));
      if (delta) {
        const a = pc.accuracy['student-alone']![k];
        const b = pc.accuracy['student-distilled']![k];
        // A class without test samples has no accuracy (NaN): no difference to show either.
        cells.push(Number.isFinite(a) && Number.isFinite(b) ? `${b! >= a! ? '+' : '−'}${Math.abs((b! - a!) * 100).toFixed(2)} pt` : '—');
      }
      return [name, ...cells];
    });
    parts.push('<h3>Test accuracy per class</h3>', table(['class', ...present, ...(delta ? ['distilled − alone'] : [])], rows));
  }
  parts.push('<p class="note">Hints read training and validation numbers only, so following one never tunes on the test split.</p>', '</section>');
  return parts.join('\n');
}

function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return `<table><thead><tr>${head.map((h, j) => `<th${j > 0 ? ' class="num"' : ''}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c, j) => `<td${j > 0 ? ' class="num"' : ''}>${esc(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function numOr(x: unknown): number {
  return typeof x === 'number' && Number.isFinite(x) ? x : NaN;
}

function pct(x: unknown): string {
  return typeof x === 'number' && Number.isFinite(x) ? `${(x * 100).toFixed(2)}%` : '—';
}

function fmt(x: unknown): string {
  return typeof x === 'number' && Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(4)) : '—';
}
