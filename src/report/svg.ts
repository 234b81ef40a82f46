/**
 * Hand-written SVG charts for the HTML report: a line chart (several series overlaid, axes with tick labels,
 * legend) and a bar chart. Plain strings, no DOM, no scripts, so the report stays one self-contained file.
 */

/** Escapes text for HTML and SVG content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const esc = escapeHtml;

/** Okabe–Ito: distinguishable with the common colour-vision deficiencies. */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#D55E00', '#56B4E9', '#000000', '#F0E442'];
/** Dash patterns cycle with the colours so lines stay apart in grey print. */
export const DASHES = ['', '6 3', '2 3', '8 3 2 3'];

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';
const CHAR_W = 6.6; // rough width of a 12px sans-serif character, for layout only

function n(x: number): string {
  return Number(x.toFixed(2)).toString();
}

/** Round tick positions covering [min, max]: steps of 1, 2, 2.5 or 5 × 10^k. */
export function niceTicks(min: number, max: number, count = 5): { ticks: number[]; step: number } {
  if (!(max > min)) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag);
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step * 1e-6; v += step) ticks.push(Number(v.toPrecision(12)));
  return { ticks, step };
}

/** Decimals needed to tell ticks `step` apart. */
function decimalsFor(step: number): number {
  if (!(step > 0)) return 0;
  let d = Math.max(0, -Math.floor(Math.log10(step)));
  while (d < 10 && Math.abs(Number(step.toFixed(d)) - step) > step * 1e-6) d++;
  return d;
}

export type TickFormat = (v: number, step: number) => string;

export const plainTicks: TickFormat = (v, step) => v.toFixed(decimalsFor(step));
/** For fractions shown as percentages: 0.975 → "97.5%". */
export const percentTicks: TickFormat = (v, step) => `${(v * 100).toFixed(decimalsFor(step * 100))}%`;

export interface Series {
  name: string;
  /** [x, y] pairs; non-finite y values leave a gap in the line. */
  points: readonly (readonly [number, number])[];
  color?: string;
  dash?: string;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  yFormat?: TickFormat;
  /** Only integer x ticks (epochs). */
  xInteger?: boolean;
  /** 'auto' switches to a log scale when positive data spans more than 50×, so late-epoch losses stay readable. */
  yScale?: 'linear' | 'log' | 'auto';
  width?: number;
  height?: number;
}

interface Layout {
  width: number;
  plotTop: number;
  plotLeft: number;
  plotW: number;
  plotH: number;
}

function legendRows(names: readonly string[], width: number, left: number): { x: number; row: number }[] {
  const out: { x: number; row: number }[] = [];
  let x = left;
  let row = 0;
  for (const name of names) {
    const w = 28 + name.length * CHAR_W + 16;
    if (x + w > width - 8 && x > left) {
      row++;
      x = left;
    }
    out.push({ x, row });
    x += w;
  }
  return out;
}

function emptyChart(title: string, width: number, message: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} 90" width="${width}" height="90" role="img" aria-label="${esc(title)}" ${FONT}>` +
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="14" font-weight="600">${esc(title)}</text>` +
    `<text x="${width / 2}" y="55" text-anchor="middle" font-size="12" fill="#666">${esc(message)}</text></svg>`
  );
}

/** A line chart with all series overlaid, tick-labelled axes, light grid lines and a legend below. */
export function lineChart(spec: LineChartSpec): string {
  const width = spec.width ?? 520;
  const plotH = spec.height ?? 260;
  const series = spec.series.map((s, i) => ({
    ...s,
    color: s.color ?? PALETTE[i % PALETTE.length]!,
    dash: s.dash ?? DASHES[Math.floor(i / PALETTE.length) % DASHES.length]!,
    points: s.points.filter(([x]) => Number.isFinite(x)),
  }));
  const finite = series.flatMap((s) => s.points.filter(([, y]) => Number.isFinite(y)));
  if (finite.length === 0) return emptyChart(spec.title, width, 'no data');

  const ys = finite.map(([, y]) => y);
  const yMin = Math.min(...ys);
  const yMax = Math.max(...ys);
  const log = spec.yScale === 'log' ? yMin > 0 : spec.yScale === 'auto' || spec.yScale === undefined ? yMin > 0 && yMax / yMin > 50 : false;
  const fmtY = spec.yFormat ?? plainTicks;

  // y scale
  let yTicks: number[];
  let yLabels: string[];
  let yLo: number;
  let yHi: number;
  if (log) {
    // Bounds on the 1-2-5 ladder hug the data better than whole decades.
    yLo = ladderFloor(yMin);
    yHi = ladderCeil(yMax);
    const decades = Math.log10(yHi / yLo);
    yTicks = [];
    for (let e = Math.floor(Math.log10(yLo)); e <= Math.ceil(Math.log10(yHi)); e++) {
      for (const m of decades <= 3 ? [1, 2, 5] : [1]) {
        const v = Number((m * 10 ** e).toPrecision(12));
        if (v >= yLo * (1 - 1e-9) && v <= yHi * (1 + 1e-9)) yTicks.push(v);
      }
    }
    yLabels = yTicks.map((v) => fmtLogTick(v));
  } else {
    const t = niceTicks(yMin, yMax, 5);
    yTicks = t.ticks;
    yLo = t.ticks[0]!;
    yHi = t.ticks[t.ticks.length - 1]!;
    yLabels = yTicks.map((v) => fmtY(v, t.step));
  }

  // x scale
  const xs = finite.map(([x]) => x);
  let xLo = Math.min(...xs);
  let xHi = Math.max(...xs);
  if (xHi === xLo) {
    xLo -= 1;
    xHi += 1;
  }
  const xt = niceTicks(xLo, xHi, Math.min(10, spec.xInteger ? Math.max(1, xHi - xLo) : 6));
  const xStep = spec.xInteger ? Math.max(1, Math.round(xt.step)) : xt.step;
  const xTicks = xt.ticks.filter((v) => v >= xLo - 1e-9 && v <= xHi + 1e-9 && (!spec.xInteger || Number.isInteger(v)));

  const yLabelW = Math.max(...yLabels.map((l) => l.length)) * CHAR_W;
  const layout: Layout = { width, plotTop: 34, plotLeft: Math.round(Math.max(40, yLabelW + 30)), plotW: 0, plotH };
  layout.plotW = width - layout.plotLeft - 16;
  const X = (x: number): number => layout.plotLeft + ((x - xLo) / (xHi - xLo)) * layout.plotW;
  const Y = (y: number): number =>
    log
      ? layout.plotTop + layout.plotH - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * layout.plotH
      : layout.plotTop + layout.plotH - ((y - yLo) / (yHi - yLo)) * layout.plotH;

  const legend = legendRows(series.map((s) => s.name), width, layout.plotLeft);
  const legendTop = layout.plotTop + layout.plotH + 48;
  const height = legendTop + (Math.max(0, ...legend.map((l) => l.row)) + 1) * 20 + 4;
  const bottom = layout.plotTop + layout.plotH;

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(spec.title)}" ${FONT}>`,
  );
  parts.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(spec.title)}</text>`);
  // grid + y ticks
  yTicks.forEach((v, i) => {
    const y = n(Y(v));
    parts.push(`<line x1="${layout.plotLeft}" x2="${layout.plotLeft + layout.plotW}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${layout.plotLeft - 6}" y="${y}" dy="0.32em" text-anchor="end" font-size="11" fill="#333">${esc(yLabels[i]!)}</text>`);
  });
  // x ticks
  for (const v of xTicks) {
    const x = n(X(v));
    parts.push(`<line x1="${x}" x2="${x}" y1="${bottom}" y2="${bottom + 5}" stroke="#333"/>`);
    parts.push(`<text x="${x}" y="${bottom + 18}" text-anchor="middle" font-size="11" fill="#333">${esc(plainTicks(v, xStep))}</text>`);
  }
  // axes
  parts.push(
    `<path d="M${layout.plotLeft},${layout.plotTop}V${bottom}H${layout.plotLeft + layout.plotW}" fill="none" stroke="#333"/>`,
    `<text x="${layout.plotLeft + layout.plotW / 2}" y="${bottom + 36}" text-anchor="middle" font-size="12">${esc(spec.xLabel)}</text>`,
    `<text transform="translate(14 ${layout.plotTop + layout.plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(spec.yLabel + (log ? ' (log scale)' : ''))}</text>`,
  );
  // series
  for (const s of series) {
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y) || (log && y <= 0)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${n(X(x))},${n(Y(y))}`;
      pen = true;
    }
    const dash = s.dash === '' ? '' : ` stroke-dasharray="${s.dash}"`;
    if (d !== '') parts.push(`<path d="${d}" fill="none" stroke="${esc(s.color)}" stroke-width="2"${dash}><title>${esc(s.name)}</title></path>`);
    if (s.points.length <= 40) {
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y) || (log && y <= 0)) continue;
        parts.push(`<circle cx="${n(X(x))}" cy="${n(Y(y))}" r="2.5" fill="${esc(s.color)}"><title>${esc(`${s.name}: ${x}, ${y}`)}</title></circle>`);
      }
    }
  }
  // legend
  series.forEach((s, i) => {
    const { x, row } = legend[i]!;
    const y = legendTop + row * 20;
    const dash = s.dash === '' ? '' : ` stroke-dasharray="${s.dash}"`;
    parts.push(`<line x1="${n(x)}" x2="${n(x + 22)}" y1="${y}" y2="${y}" stroke="${esc(s.color)}" stroke-width="2.5"${dash}/>`);
    parts.push(`<text x="${n(x + 28)}" y="${y}" dy="0.32em" font-size="12">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

const LADDER = [1, 2, 5, 10];

/** The largest 1, 2 or 5 × 10^k not above v (v > 0). */
function ladderFloor(v: number): number {
  const mag = 10 ** Math.floor(Math.log10(v));
  const m = [...LADDER].reverse().find((k) => k * mag <= v * (1 + 1e-9)) ?? 1;
  return Number((m * mag).toPrecision(12));
}

/** The smallest 1, 2 or 5 × 10^k not below v (v > 0). */
function ladderCeil(v: number): number {
  const mag = 10 ** Math.floor(Math.log10(v));
  const m = LADDER.find((k) => k * mag >= v * (1 - 1e-9)) ?? 10;
  return Number((m * mag).toPrecision(12));
}

function fmtLogTick(v: number): string {
  if (v >= 1e4 || v < 1e-3) return v.toExponential(0).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}

export interface BarSpec {
  /** Lines of the label under the bar (e.g. role, then architecture). */
  label: readonly string[];
  value: number;
  color?: string;
}

export interface BarChartSpec {
  title: string;
  yLabel: string;
  bars: readonly BarSpec[];
  yFormat?: TickFormat;
  /** Text printed above each bar. */
  valueFormat?: (v: number) => string;
  /**
   * Start the axis at zero (default). When false the axis starts at a round value below the smallest bar, so
   * 97% vs 98% is visible; the chart then says where the axis starts, since bar heights are no longer proportional.
   */
  zeroBased?: boolean;
  /** Largest value the axis may show (1 for accuracies). */
  max?: number;
  width?: number;
  height?: number;
}

/** A vertical bar chart with value labels. */
export function barChart(spec: BarChartSpec): string {
  const width = spec.width ?? 520;
  const plotH = spec.height ?? 240;
  const bars = spec.bars.map((b, i) => ({ ...b, color: b.color ?? PALETTE[i % PALETTE.length]! }));
  const vals = bars.map((b) => b.value).filter(Number.isFinite);
  if (vals.length === 0) return emptyChart(spec.title, width, 'no data');
  const fmtY = spec.yFormat ?? plainTicks;
  const vMin = Math.min(...vals);
  const vMax = Math.max(...vals);
  const zero = spec.zeroBased ?? true;
  let lo: number;
  let hi: number;
  if (zero) {
    lo = Math.min(0, vMin);
    hi = Math.max(0, vMax);
  } else {
    const spread = Math.max(vMax - vMin, Math.abs(vMax) * 0.01, 1e-6);
    lo = vMin - spread * 0.6;
    hi = vMax + spread * 0.15;
    if (vMin >= 0) lo = Math.max(0, lo);
    // A cut that hides less than half the axis gains little and exaggerates: start at zero then.
    if (vMin >= 0 && lo < vMax * 0.5) lo = 0;
  }
  if (spec.max !== undefined) hi = Math.min(Math.max(hi, vMax), spec.max);
  const t = niceTicks(lo, hi, 5);
  let ticks = t.ticks;
  if (spec.max !== undefined) ticks = ticks.filter((v) => v <= spec.max! + 1e-9);
  const yLo = ticks[0]!;
  const yHi = Math.max(ticks[ticks.length - 1]!, vMax);
  const labels = ticks.map((v) => fmtY(v, t.step));

  const plotLeft = Math.round(Math.max(40, Math.max(...labels.map((l) => l.length)) * CHAR_W + 30));
  // Room for the title, the axis note and the value label above the tallest bar.
  const plotTop = 58;
  const plotW = width - plotLeft - 16;
  const bottom = plotTop + plotH;
  const maxLines = Math.max(1, ...bars.map((b) => b.label.length));
  const height = bottom + 14 + maxLines * 15 + 8;
  const Y = (v: number): number => bottom - ((Math.min(Math.max(v, yLo), yHi) - yLo) / (yHi - yLo)) * plotH;
  const slot = plotW / bars.length;
  const barW = Math.min(80, slot * 0.6);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(spec.title)}" ${FONT}>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(spec.title)}</text>`,
  );
  if (!zero && yLo !== 0) {
    parts.push(`<text x="${width / 2}" y="36" text-anchor="middle" font-size="11" fill="#666">${esc(`axis starts at ${labels[0]}, not 0`)}</text>`);
  }
  ticks.forEach((v, i) => {
    const y = n(Y(v));
    parts.push(`<line x1="${plotLeft}" x2="${plotLeft + plotW}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${plotLeft - 6}" y="${y}" dy="0.32em" text-anchor="end" font-size="11" fill="#333">${esc(labels[i]!)}</text>`);
  });
  // One decimal more than the ticks, so close bars get different labels.
  const valueFmt = spec.valueFormat ?? ((v: number) => fmtY(v, t.step / 10));
  bars.forEach((b, i) => {
    const cx = plotLeft + slot * (i + 0.5);
    if (Number.isFinite(b.value)) {
      const top = Y(b.value);
      parts.push(
        `<rect x="${n(cx - barW / 2)}" y="${n(top)}" width="${n(barW)}" height="${n(bottom - top)}" fill="${esc(b.color)}"><title>${esc(`${b.label.join(' ')}: ${valueFmt(b.value)}`)}</title></rect>`,
        `<text x="${n(cx)}" y="${n(top - 5)}" text-anchor="middle" font-size="12" font-weight="600">${esc(valueFmt(b.value))}</text>`,
      );
    } else {
      parts.push(`<text x="${n(cx)}" y="${bottom - 6}" text-anchor="middle" font-size="12" fill="#666">no value</text>`);
    }
    b.label.forEach((line, j) => {
      parts.push(`<text x="${n(cx)}" y="${bottom + 18 + j * 15}" text-anchor="middle" font-size="${j === 0 ? 12 : 11}"${j === 0 ? '' : ' fill="#555"'}>${esc(line)}</text>`);
    });
  });
  parts.push(
    `<path d="M${plotLeft},${plotTop}V${bottom}H${plotLeft + plotW}" fill="none" stroke="#333"/>`,
    `<text transform="translate(14 ${plotTop + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(spec.yLabel)}</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Reliability diagram, heatmap, scatter chart (diagnosis and search sections of the report).

export interface ReliabilitySeries {
  name: string;
  color?: string;
  /** Expected calibration error, shown in the legend. */
  ece: number;
  /** Equal-width confidence bins; empty bins (count 0, NaN accuracy) draw nothing. */
  bins: readonly { lo: number; hi: number; count: number; confidence: number; accuracy: number }[];
}

/**
 * Accuracy against confidence per bin, one line with points per model, over the diagonal of perfect calibration:
 * points below the diagonal are over-confident. Point size grows with the bin's share of the samples.
 */
export function reliabilityDiagram(spec: { title: string; series: readonly ReliabilitySeries[]; width?: number }): string {
  const width = spec.width ?? 520;
  const size = width - 80;
  const left = 56;
  const top = 34;
  const series = spec.series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length]! }));
  if (series.every((s) => s.bins.every((b) => !(b.count > 0)))) return emptyChart(spec.title, width, 'no data');
  const X = (v: number) => left + v * size;
  const Y = (v: number) => top + (1 - v) * size;
  const labels = series.map((s) => `${s.name} (ECE ${Number.isFinite(s.ece) ? s.ece.toFixed(3) : '—'})`);
  const legend = legendRows(labels, width, left);
  const legendTop = top + size + 48;
  const height = legendTop + (Math.max(0, ...legend.map((l) => l.row)) + 1) * 20 + 4;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(spec.title)}" ${FONT}>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(spec.title)}</text>`,
  ];
  for (const v of [0, 0.2, 0.4, 0.6, 0.8, 1]) {
    parts.push(`<line x1="${n(X(0))}" x2="${n(X(1))}" y1="${n(Y(v))}" y2="${n(Y(v))}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${left - 6}" y="${n(Y(v))}" dy="0.32em" text-anchor="end" font-size="11" fill="#333">${esc(percentTicks(v, 0.2))}</text>`);
    parts.push(`<text x="${n(X(v))}" y="${n(Y(0) + 18)}" text-anchor="middle" font-size="11" fill="#333">${esc(percentTicks(v, 0.2))}</text>`);
  }
  parts.push(
    `<path d="M${n(X(0))},${n(Y(1))}V${n(Y(0))}H${n(X(1))}" fill="none" stroke="#333"/>`,
    `<line x1="${n(X(0))}" y1="${n(Y(0))}" x2="${n(X(1))}" y2="${n(Y(1))}" stroke="#999" stroke-dasharray="4 3"><title>perfect calibration</title></line>`,
    `<text x="${n(X(0.5))}" y="${n(Y(0) + 36)}" text-anchor="middle" font-size="12">confidence (top softmax probability)</text>`,
    `<text transform="translate(14 ${n(top + size / 2)}) rotate(-90)" text-anchor="middle" font-size="12">accuracy</text>`,
  );
  for (const s of series) {
    const total = s.bins.reduce((a, b) => a + (b.count > 0 ? b.count : 0), 0);
    const pts = s.bins.filter((b) => b.count > 0 && Number.isFinite(b.accuracy) && Number.isFinite(b.confidence));
    if (pts.length === 0) continue;
    parts.push(`<path d="${pts.map((b, i) => `${i === 0 ? 'M' : 'L'}${n(X(b.confidence))},${n(Y(b.accuracy))}`).join('')}" fill="none" stroke="${esc(s.color)}" stroke-width="2"><title>${esc(s.name)}</title></path>`);
    for (const b of pts) {
      const r = 2.5 + 5 * Math.sqrt(b.count / Math.max(1, total));
      parts.push(
        `<circle cx="${n(X(b.confidence))}" cy="${n(Y(b.accuracy))}" r="${n(r)}" fill="${esc(s.color)}" fill-opacity="0.75"><title>${esc(`${s.name}: confidence ${b.lo.toFixed(2)}-${b.hi.toFixed(2)}, ${b.count} samples, mean confidence ${(b.confidence * 100).toFixed(1)} %, accuracy ${(b.accuracy * 100).toFixed(1)} %`)}</title></circle>`,
      );
    }
  }
  series.forEach((s, i) => {
    const { x, row } = legend[i]!;
    const y = legendTop + row * 20;
    parts.push(`<line x1="${n(x)}" x2="${n(x + 22)}" y1="${y}" y2="${y}" stroke="${esc(s.color)}" stroke-width="2.5"/>`);
    parts.push(`<text x="${n(x + 28)}" y="${y}" dy="0.32em" font-size="12">${esc(labels[i]!)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export interface HeatmapSpec {
  title: string;
  rowLabels: readonly string[];
  colLabels: readonly string[];
  /** values[row][col]; NaN leaves the cell grey and empty. */
  values: readonly (readonly number[])[];
  rowTitle: string;
  colTitle: string;
  format?: (v: number) => string;
  /** Cells to outline (e.g. the chosen configuration). */
  highlight?: readonly (readonly [number, number])[];
  width?: number;
}

/** A matrix of numbers as coloured cells (light to dark blue by value), each printing its value. */
export function heatmap(spec: HeatmapSpec): string {
  const rows = spec.rowLabels.length;
  const cols = spec.colLabels.length;
  const finite = spec.values.flat().filter(Number.isFinite);
  // Wide enough for the title too: a long title on a small matrix was cut at both ends.
  const width = Math.max(spec.width ?? Math.min(620, Math.max(320, 120 + cols * 52)), Math.ceil(spec.title.length * 8.5) + 24);
  if (rows === 0 || cols === 0 || finite.length === 0) return emptyChart(spec.title, width, 'no data');
  const fmt = spec.format ?? ((v: number) => String(Number(v.toPrecision(3))));
  const left = Math.round(Math.min(160, 40 + Math.max(...spec.rowLabels.map((l) => l.length)) * CHAR_W));
  const top = 40;
  const cell = Math.max(22, Math.min(56, Math.floor((width - left - 16) / cols)));
  const height = top + rows * cell + 56;
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const shade = (v: number) => {
    const f = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    // From #eef4fb to #08519c.
    const mix = (a: number, b: number) => Math.round(a + (b - a) * f);
    return { fill: `rgb(${mix(238, 8)},${mix(244, 81)},${mix(251, 156)})`, ink: f > 0.55 ? '#fff' : '#1a1a1a' };
  };
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(spec.title)}" ${FONT}>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(spec.title)}</text>`,
  ];
  const fontSize = cell >= 40 ? 11 : 9;
  for (let r = 0; r < rows; r++) {
    const y = top + r * cell;
    parts.push(`<text x="${left - 6}" y="${n(y + cell / 2)}" dy="0.32em" text-anchor="end" font-size="11">${esc(spec.rowLabels[r]!)}</text>`);
    for (let c = 0; c < cols; c++) {
      const v = spec.values[r]?.[c] ?? NaN;
      const x = left + c * cell;
      if (!Number.isFinite(v)) {
        parts.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="#f2f2f2" stroke="#fff"/>`);
        continue;
      }
      const s = shade(v);
      parts.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${s.fill}" stroke="#fff"><title>${esc(`${spec.rowTitle} ${spec.rowLabels[r]}, ${spec.colTitle} ${spec.colLabels[c]}: ${fmt(v)}`)}</title></rect>`);
      parts.push(`<text x="${n(x + cell / 2)}" y="${n(y + cell / 2)}" dy="0.32em" text-anchor="middle" font-size="${fontSize}" fill="${s.ink}">${esc(fmt(v))}</text>`);
    }
  }
  for (const [r, c] of spec.highlight ?? []) parts.push(`<rect x="${left + c * cell + 1}" y="${top + r * cell + 1}" width="${cell - 2}" height="${cell - 2}" fill="none" stroke="#D55E00" stroke-width="2.5"/>`);
  for (let c = 0; c < cols; c++) {
    parts.push(`<text x="${n(left + c * cell + cell / 2)}" y="${top + rows * cell + 16}" text-anchor="middle" font-size="11">${esc(spec.colLabels[c]!)}</text>`);
  }
  parts.push(
    `<text x="${n(left + (cols * cell) / 2)}" y="${top + rows * cell + 38}" text-anchor="middle" font-size="12">${esc(spec.colTitle)}</text>`,
    `<text transform="translate(14 ${n(top + (rows * cell) / 2)}) rotate(-90)" text-anchor="middle" font-size="12">${esc(spec.rowTitle)}</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

export interface ScatterPoint {
  x: number;
  y: number;
  label?: string;
  color?: string;
  /** Drawn larger, with its label. */
  emphasis?: boolean;
}

/** Points on tick-labelled axes (x optionally on a log scale), each with its label as a tooltip. */
export function scatterChart(spec: { title: string; xLabel: string; yLabel: string; points: readonly ScatterPoint[]; xLog?: boolean; yFormat?: TickFormat; width?: number; height?: number }): string {
  const width = spec.width ?? 520;
  const plotH = spec.height ?? 260;
  const pts = spec.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!spec.xLog || p.x > 0));
  if (pts.length === 0) return emptyChart(spec.title, width, 'no data');
  const fmtY = spec.yFormat ?? plainTicks;
  const yt = niceTicks(Math.min(...pts.map((p) => p.y)), Math.max(...pts.map((p) => p.y)), 5);
  const yLo = yt.ticks[0]!;
  const yHi = yt.ticks[yt.ticks.length - 1]!;
  const yLabels = yt.ticks.map((v) => fmtY(v, yt.step));
  const xv = pts.map((p) => (spec.xLog ? Math.log10(p.x) : p.x));
  let xLo = Math.min(...xv);
  let xHi = Math.max(...xv);
  if (xHi === xLo) {
    xLo -= spec.xLog ? 0.5 : 1;
    xHi += spec.xLog ? 0.5 : 1;
  }
  const xt = spec.xLog ? undefined : niceTicks(xLo, xHi, 6);
  if (xt) {
    xLo = xt.ticks[0]!;
    xHi = xt.ticks[xt.ticks.length - 1]!;
  }
  const xTicks = xt
    ? xt.ticks.map((v) => ({ pos: v, text: plainTicks(v, xt.step) }))
    : Array.from({ length: Math.floor(xHi) - Math.ceil(xLo) + 1 }, (_, i) => Math.ceil(xLo) + i).map((e) => ({ pos: e, text: fmtLogTick(10 ** e) }));
  const left = Math.round(Math.max(40, Math.max(...yLabels.map((l) => l.length)) * CHAR_W + 30));
  const top = 34;
  const plotW = width - left - 16;
  const X = (v: number) => left + ((v - xLo) / (xHi - xLo)) * plotW;
  const Y = (v: number) => top + plotH - ((v - yLo) / (yHi - yLo)) * plotH;
  const bottom = top + plotH;
  const height = bottom + 48;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(spec.title)}" ${FONT}>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(spec.title)}</text>`,
  ];
  yt.ticks.forEach((v, i) => {
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${n(Y(v))}" y2="${n(Y(v))}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${left - 6}" y="${n(Y(v))}" dy="0.32em" text-anchor="end" font-size="11" fill="#333">${esc(yLabels[i]!)}</text>`);
  });
  for (const t of xTicks) {
    parts.push(`<line x1="${n(X(t.pos))}" x2="${n(X(t.pos))}" y1="${bottom}" y2="${bottom + 5}" stroke="#333"/>`);
    parts.push(`<text x="${n(X(t.pos))}" y="${bottom + 18}" text-anchor="middle" font-size="11" fill="#333">${esc(t.text)}</text>`);
  }
  parts.push(
    `<path d="M${left},${top}V${bottom}H${left + plotW}" fill="none" stroke="#333"/>`,
    `<text x="${left + plotW / 2}" y="${bottom + 36}" text-anchor="middle" font-size="12">${esc(spec.xLabel + (spec.xLog ? ' (log scale)' : ''))}</text>`,
    `<text transform="translate(14 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(spec.yLabel)}</text>`,
  );
  pts.forEach((p, i) => {
    const cx = n(X(xv[i]!));
    const cy = n(Y(p.y));
    const color = p.color ?? PALETTE[0]!;
    parts.push(`<circle cx="${cx}" cy="${cy}" r="${p.emphasis ? 6 : 4}" fill="${esc(color)}" fill-opacity="${p.emphasis ? 1 : 0.7}"${p.emphasis ? ' stroke="#1a1a1a" stroke-width="1.5"' : ''}><title>${esc(p.label ?? `${p.x}, ${p.y}`)}</title></circle>`);
    // Anchored towards the plot's middle, so a label near either edge stays inside the chart.
    const anchor = X(xv[i]!) > left + plotW * 0.6 ? 'end' : X(xv[i]!) < left + plotW * 0.4 ? 'start' : 'middle';
    if (p.emphasis && p.label) parts.push(`<text x="${cx}" y="${n(Y(p.y) - 10)}" text-anchor="${anchor}" font-size="11">${esc(p.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
