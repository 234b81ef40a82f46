import type { RunRecord, TuneSummary } from './record.js';
import { escapeHtml as esc } from './svg.js';
import { fmtPct, fmtSeconds } from './table.js';

/**
 * The report's section on a hyperparameter search (kdistill tune): the trials sorted by the validation metric with
 * the values they tried, where the chosen one stands, and how the test split was used.
 */
export function tuneSection(record: RunRecord): string {
  const t = record.tune as TuneSummary | undefined;
  if (!t || !Array.isArray(t.trials)) return '';
  const paths = t.paths ?? [];
  const sorted = [...t.trials].sort((a, b) => num(b.valAcc) - num(a.valAcc) || num(a.valLoss) - num(b.valLoss) || a.trial - b.trial);
  const head = ['rank', 'trial', ...paths.map(shortPath), 'epochs reached', 'val acc', 'val loss', 'seconds'];
  const rows = sorted.map((r, i) => {
    const chosen = r.trial === t.best;
    const cells = [
      String(i + 1),
      `${r.trial + 1}${chosen ? ' (chosen)' : ''}`,
      ...paths.map((p) => show(r.params?.[p])),
      String(r.epochs ?? '—'),
      Number.isFinite(r.valAcc) ? fmtPct(r.valAcc) : '—',
      Number.isFinite(r.valLoss) ? r.valLoss.toFixed(4) : '—',
      Number.isFinite(r.seconds) ? fmtSeconds(r.seconds) : '—',
    ];
    return `<tr${chosen ? ' class="chosen"' : ''}>${cells.map((c, j) => `<td${j >= 2 + paths.length || j < 2 ? ' class="num"' : ''}>${esc(c)}</td>`).join('')}</tr>`;
  });
  const rungs = (t.rungs ?? []).join(', ');
  return `<section>
<h2>Hyperparameter search</h2>
<p>Strategy <b>${esc(String(t.strategy))}</b>, ${t.trials.length} configurations, judged by validation ${esc(String(t.metric))}${
    (t.rungs ?? []).length > 1 ? `, epoch budgets per rung ${esc(rungs)}` : ''
  }. The test split was evaluated ${esc(String(t.test ?? ''))}: the numbers above are that evaluation.</p>
<table>
<thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>
<p class="note">Each trial at the highest rung it reached; validation numbers are from the trial's exported student, as <code>kdistill run</code> scores a student. best.yaml in the output folder is the chosen configuration.</p>
</section>`;
}

function num(x: unknown): number {
  return typeof x === 'number' && Number.isFinite(x) ? x : -Infinity;
}

function shortPath(p: string): string {
  const parts = p.split('.');
  return parts.length > 2 ? parts.slice(-2).join('.') : p;
}

function show(v: unknown): string {
  if (v === undefined) return '—';
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}
