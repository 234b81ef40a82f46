import type { RunRecord, TuneSummary } from './record.js';
import { PALETTE, escapeHtml as esc, heatmap, percentTicks, scatterChart } from './svg.js';
import { fmtPct, fmtSeconds } from './table.js';

/**
 * The report's section on a hyperparameter search (kdistill tune): the trials sorted by the validation metric with
 * the values they tried, where the chosen one stands, and how the test split was used. Trials are shown by their
 * numbers as recorded (from 1, as the folders trials/1…N).
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
      `${r.trial}${chosen ? ' (chosen)' : ''}`,
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
${plots(t)}
</section>`;
}

/**
 * A temperature × weight heatmap of the best validation accuracy among the trials at each pair (when the search
 * varied both), and validation accuracy against each trial's cost.
 */
function plots(t: TuneSummary): string {
  const figs: string[] = [];
  const varied = (t.paths ?? []).filter((p) => new Set(t.trials.map((r) => JSON.stringify(r.params?.[p]))).size > 1);
  const tPath = varied.find((p) => /temperature$/.test(p));
  const wPath = varied.find((p) => /\[(kd|dkd|dist|\d+)\]\.weight$/.test(p) && !/\[ce\]/.test(p));
  const done = t.trials.filter((r) => Number.isFinite(r.valAcc));
  const topEpochs = Math.max(0, ...done.map((r) => r.epochs));
  if (tPath && wPath) {
    // Only trials that reached the last rung are comparable; with halving that may leave few cells.
    const full = done.filter((r) => r.epochs === topEpochs);
    const rows = [...new Set(full.map((r) => Number(r.params[tPath])))].sort((a, b) => a - b);
    const cols = [...new Set(full.map((r) => Number(r.params[wPath])))].sort((a, b) => a - b);
    if (rows.length > 1 || cols.length > 1) {
      const values = rows.map((T) => cols.map((w) => Math.max(-Infinity, ...full.filter((r) => Number(r.params[tPath]) === T && Number(r.params[wPath]) === w).map((r) => r.valAcc))));
      const best = t.trials.find((r) => r.trial === t.best);
      const hi = best ? [[rows.indexOf(Number(best.params[tPath])), cols.indexOf(Number(best.params[wPath]))] as const].filter(([a, b]) => a >= 0 && b >= 0) : [];
      figs.push(
        heatmap({
          title: `Validation accuracy by temperature and weight (${topEpochs} epochs)`,
          rowLabels: rows.map(String),
          colLabels: cols.map(String),
          values: values.map((r) => r.map((v) => (Number.isFinite(v) ? v : NaN))),
          rowTitle: 'temperature',
          colTitle: wPath.split('.').slice(-2).join('.'),
          format: (v) => `${(v * 100).toFixed(2)}`,
          highlight: hi,
        }),
      );
    }
  }
  if (done.length > 1) {
    figs.push(
      scatterChart({
        title: 'Validation accuracy against trial cost',
        xLabel: 'seconds spent on the trial',
        yLabel: 'validation accuracy',
        yFormat: percentTicks,
        xLog: Math.max(...done.map((r) => r.seconds)) / Math.max(1e-3, Math.min(...done.map((r) => r.seconds))) > 20,
        points: done.map((r) => ({
          x: r.seconds,
          y: r.valAcc,
          label: `trial ${r.trial}: ${r.label} (${r.epochs} epochs, ${fmtPct(r.valAcc)})`,
          color: r.trial === t.best ? PALETTE[4] : PALETTE[0],
          emphasis: r.trial === t.best,
        })),
      }),
    );
  }
  return figs.length > 0 ? `<div class="plots">${figs.map((f) => `<figure>${f}</figure>`).join('\n')}</div>` : '';
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
