/**
 * The HTML report opened in a real headless browser: Debian's chromium, driven by playwright-core (which never
 * downloads a browser). Real reports come from real runs on tiny CSV data: a distillation run (teacher, student
 * alone, distilled student, diagnosis) and a `tune` grid search (its trials table, heatmap and accuracy-vs-cost
 * plot on top of all that). For each report: no console errors, no page errors, nothing fetched but the file
 * itself, the page is not blank and has its comparison table, every plot on the page (inline SVG) draws data, every
 * plot the run record implies is there with the marks the record implies, and a full-page screenshot is written
 * into this test's temporary folder.
 *
 * Skipped, saying why, when the browser is missing: `.ci/run` installs Debian's `chromium` when it is; another
 * binary can be named with KDISTILL_CHROMIUM. Keep the folder (and the screenshots) with KDISTILL_KEEP_TEST_OUTPUT=1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { runTune } from '../src/pipeline/tune.js';
import { createProgress } from '../src/report/progress.js';
import type { RunRecord } from '../src/report/record.js';
import { Rng } from '../src/util/rng.js';

const CHROMIUM = process.env.KDISTILL_CHROMIUM || '/usr/bin/chromium';
const skip = existsSync(CHROMIUM)
  ? undefined
  : `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does) or set KDISTILL_CHROMIUM to a Chromium binary`;

/** Generous bounds against a hang only; nothing here is timed. */
const HANG_MS = 120_000;

const root = mkdtempSync(join(tmpdir(), 'kd-report-browser-'));
const keep = process.env.KDISTILL_KEEP_TEST_OUTPUT === '1';
after(() => {
  if (keep) console.log(`# kept ${root}`);
  else rmSync(root, { recursive: true, force: true });
});
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });
const csv = join(root, 'blobs.csv');

let browser: Browser | undefined;
before(async () => {
  // Three overlapping Gaussian classes in 5 dimensions, 300 rows: each run below takes seconds.
  const rng = new Rng(23);
  const lines = ['a,b,c,d,e,label'];
  for (let i = 0; i < 300; i++) {
    const k = i % 3;
    const row = [0, 1, 2, 3, 4].map((j) => (rng.normal() * 1.2 + (j === k ? 1.8 : 0)).toFixed(4));
    lines.push(`${row.join(',')},c${k}`);
  }
  writeFileSync(csv, `${lines.join('\n')}\n`);
  if (skip) return;
  // The flags a closed network needs: nothing phones home, no sandbox (containers, root), a fresh profile.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: HANG_MS,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
});

function config(out: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'blobs',
    seed: 3,
    output: out,
    data: { dataset: { type: 'csv', path: csv, label: 'label' }, validation: 0.2, test: 0.2, standardize: true },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [16] }, train: { epochs: 2, batchSize: 32, optimizer: { type: 'adam', lr: 0.05 } } },
    student: { model: { type: 'mlp', hidden: [8] }, train: { epochs: 2, batchSize: 32, optimizer: { type: 'adam', lr: 0.05 } } },
    distill: { terms: [{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 2, weight: 0.5 }] },
    runtime: { threads: 1 },
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// What the page shows, read in the browser

interface Mark {
  tag: string;
  /** A path's `d`, a circle's `r`, a rect's `width`/`height` attributes. */
  d: string | null;
  r: number;
  width: number;
  height: number;
  /** Its box as drawn (getBBox). */
  boxW: number;
  boxH: number;
}

interface Figure {
  section: string;
  title: string;
  shownW: number;
  shownH: number;
  noData: boolean;
  /** Attributes anywhere in the plot whose value says NaN, Infinity, undefined or null. */
  badAttrs: string[];
  /** Data marks: the paths, circles and rects that carry a tooltip (axes, grid lines and legends do not). */
  marks: Mark[];
}

interface PageView {
  h1: string;
  textLength: number;
  headings: string[];
  resultsRows: number;
  resultsHeaders: string[];
  bodyW: number;
  bodyH: number;
  figures: Figure[];
}

/**
 * Runs in the page. The project compiles without the DOM's types (lib ES2022), so the document is reached through
 * globalThis; playwright sends this function's source to the page.
 */
function readPage(): PageView {
  const doc = (globalThis as any).document;
  const text = (e: any): string => String(e?.textContent ?? '').trim();
  const sectionOf = (e: any): string => text(e.closest('section')?.querySelector('h2'));
  const results = [...doc.querySelectorAll('section')].find((s: any) => text(s.querySelector('h2')) === 'Results');
  const body = doc.body.getBoundingClientRect();
  const figures: Figure[] = [...doc.querySelectorAll('svg[role="img"]')].map((svg: any) => {
    const box = svg.getBoundingClientRect();
    const badAttrs: string[] = [];
    for (const el of [svg, ...svg.querySelectorAll('*')]) {
      for (const a of el.attributes) if (/NaN|Infinity|undefined|null/.test(a.value)) badAttrs.push(`<${el.tagName} ${a.name}="${a.value}">`);
    }
    const marks: Mark[] = [...svg.querySelectorAll('path, circle, rect')]
      .filter((el: any) => [...el.children].some((c: any) => c.tagName === 'title'))
      .map((el: any) => {
        const b = el.getBBox();
        const num = (name: string) => Number(el.getAttribute(name) ?? NaN);
        return { tag: el.tagName, d: el.getAttribute('d'), r: num('r'), width: num('width'), height: num('height'), boxW: b.width, boxH: b.height };
      });
    return {
      section: sectionOf(svg),
      title: String(svg.getAttribute('aria-label') ?? ''),
      shownW: box.width,
      shownH: box.height,
      noData: [...svg.querySelectorAll('text')].some((t: any) => text(t) === 'no data'),
      badAttrs,
      marks,
    };
  });
  return {
    h1: text(doc.querySelector('h1')),
    textLength: String(doc.body.innerText ?? '').trim().length,
    headings: [...doc.querySelectorAll('h2')].map(text),
    resultsRows: results ? results.querySelectorAll('tbody tr').length : -1,
    resultsHeaders: results ? [...results.querySelectorAll('thead th')].map(text) : [],
    bodyW: body.width,
    bodyH: body.height,
    figures,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// What the run record says the page must show

interface Expected {
  section: string;
  title: string | RegExp;
  /** Data marks the record implies, by tag; `points` is the vertex count of each series path, in any order. */
  paths?: number;
  points?: number[];
  circles?: number;
  rects?: number;
}

const fin = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

function expectedFigures(rec: RunRecord): Expected[] {
  const out: Expected[] = [];
  const models = rec.models;
  const withHistory = models.filter((m) => m.history.length > 0);
  for (const [title, key] of [['Training objective per epoch', 'trainLoss'], ['Validation loss (cross-entropy) per epoch', 'valLoss'], ['Validation accuracy per epoch', 'valAcc']] as const) {
    const lengths = withHistory.map((m) => m.history.filter((e) => fin(e[key])).length).filter((k) => k > 0);
    out.push({ section: 'Training curves', title, paths: lengths.length, points: lengths, circles: lengths.reduce((a, b) => a + b, 0) });
  }
  out.push({ section: 'Training curves', title: 'Test accuracy', rects: models.filter((m) => fin(m.final.test.acc)).length });
  for (const m of models) {
    const names = [...new Set(m.history.flatMap((e) => Object.keys(e.terms ?? {})))];
    if (names.length > 0) out.push({ section: 'Training curves', title: new RegExp(`^Loss terms per epoch — ${m.role}`), paths: names.length });
  }
  const d = rec.diagnosis;
  if (d) {
    const calibrated = Object.values(d.calibration ?? {}).filter((c) => (c?.test.bins ?? []).some((b) => b.count > 0));
    if (Object.keys(d.calibration ?? {}).length > 0) out.push({ section: 'Diagnosis', title: /^Reliability on the test split/, paths: calibrated.length });
    const k = d.perClass?.classNames.length ?? 0;
    if (d.confusion && k > 0) out.push({ section: 'Diagnosis', title: /^Confusion matrix of the /, rects: d.confusion.matrix.flat().filter(fin).length });
  }
  const t = rec.tune;
  if (t) {
    const done = t.trials.filter((r) => fin(r.valAcc));
    // The runs below vary temperature and weight on a grid, so every pair has a cell.
    const pairs = new Set(done.map((r) => JSON.stringify(Object.entries(r.params).filter(([p]) => /temperature$|\]\.weight$/.test(p)))));
    out.push({ section: 'Hyperparameter search', title: /^Validation accuracy by temperature and weight/, rects: pairs.size });
    if (done.length > 1) out.push({ section: 'Hyperparameter search', title: 'Validation accuracy against trial cost', circles: done.length });
  }
  return out;
}

/** Vertices of an SVG path made of M and L commands (the report's series lines). */
function vertices(d: string): number {
  return (d.match(/[ML]/g) ?? []).length;
}

// ---------------------------------------------------------------------------------------------------------------

async function openReport(name: string, out: string, minFigures: number) {
  assert.ok(browser, 'the browser started');
  const reportPath = join(out, 'report.html');
  const rec = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunRecord;
  const url = pathToFileURL(reportPath).href;
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(HANG_MS);
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    const response = await page.goto(url, { waitUntil: 'load', timeout: HANG_MS });
    assert.ok(response === null || response.ok(), `${name}: the report loads`);
    const view = await page.evaluate(readPage);

    // The page itself.
    assert.match(await page.title(), /^kdistill report/);
    assert.equal(view.h1, 'kdistill run report');
    assert.ok(view.textLength > 1000, `${name}: the page has text (${view.textLength} characters)`);
    assert.ok(view.bodyW > 600 && view.bodyH > 1500, `${name}: the page is laid out (${view.bodyW}×${view.bodyH})`);
    for (const h of ['Results', 'Diagnosis', 'Training curves', 'Final metrics per split', 'Run', 'Config']) assert.ok(view.headings.includes(h), `${name}: section ${h} (has ${view.headings.join(', ')})`);
    assert.equal(view.resultsRows, rec.models.length, `${name}: the comparison table has a row per model`);
    assert.ok(view.resultsHeaders.length >= 4, `${name}: the comparison table has its columns (${view.resultsHeaders.join(', ')})`);

    // Every plot on the page draws data.
    assert.ok(view.figures.length >= minFigures, `${name}: ${view.figures.length} plots, expected at least ${minFigures}`);
    for (const f of view.figures) {
      const what = `${name}: plot "${f.title}" (${f.section})`;
      assert.ok(f.shownW > 100 && f.shownH > 50, `${what} is shown (${f.shownW}×${f.shownH})`);
      assert.equal(f.noData, false, `${what} says "no data"`);
      assert.deepEqual(f.badAttrs, [], `${what} has no NaN/Infinity/undefined attributes`);
      assert.ok(f.marks.length > 0, `${what} has data marks`);
      for (const m of f.marks) {
        if (m.tag === 'path') assert.match(m.d ?? '', /^M-?\d/, `${what}: a path with data`);
        if (m.tag === 'circle') assert.ok(m.r > 0, `${what}: a circle with a radius`);
        if (m.tag === 'rect') assert.ok(m.width > 0 && m.height > 0 && m.boxW > 0 && m.boxH > 0, `${what}: a rect with a size (${m.width}×${m.height})`);
      }
      const w = Math.max(...f.marks.map((m) => m.boxW));
      const h = Math.max(...f.marks.map((m) => m.boxH));
      assert.ok(w > 0 || h > 0 || f.marks.some((m) => m.tag === 'circle'), `${what}: its marks cover some area`);
    }

    // Every plot the record implies is there, with the marks it implies.
    const expected = expectedFigures(rec);
    for (const e of expected) {
      const found = view.figures.filter((f) => f.section === e.section && (typeof e.title === 'string' ? f.title === e.title : e.title.test(f.title)));
      assert.equal(found.length, 1, `${name}: one plot "${String(e.title)}" in ${e.section} (plots: ${view.figures.map((f) => f.title).join(' | ')})`);
      const f = found[0]!;
      const count = (tag: string) => f.marks.filter((m) => m.tag === tag).length;
      if (e.paths !== undefined) assert.equal(count('path'), e.paths, `${name}: "${f.title}" draws ${e.paths} lines`);
      if (e.circles !== undefined) assert.equal(count('circle'), e.circles, `${name}: "${f.title}" draws ${e.circles} points`);
      if (e.rects !== undefined) assert.equal(count('rect'), e.rects, `${name}: "${f.title}" draws ${e.rects} bars or cells`);
      if (e.points !== undefined) {
        const got = f.marks.filter((m) => m.tag === 'path').map((m) => vertices(m.d ?? '')).sort((a, b) => a - b);
        assert.deepEqual(got, [...e.points].sort((a, b) => a - b), `${name}: "${f.title}": one vertex per epoch`);
        for (const m of f.marks.filter((x) => x.tag === 'path' && vertices(x.d ?? '') > 1)) assert.ok(m.boxW > 0, `${name}: "${f.title}": a line spans the epochs`);
      }
    }

    // Self-contained: nothing is fetched but the file, and nothing complained.
    assert.deepEqual([...new Set(requests)], [url], `${name}: only the report itself is loaded`);
    assert.deepEqual(problems, [], `${name}: no console errors or page errors`);

    // A full-page screenshot in this test's temporary folder.
    const shot = join(root, `${name}.png`);
    await page.screenshot({ path: shot, fullPage: true, timeout: HANG_MS });
    const png = readFileSync(shot);
    assert.ok(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), `${name}: the screenshot is a PNG`);
    const [pw, ph] = [png.readUInt32BE(16), png.readUInt32BE(20)];
    assert.ok(pw >= 1000 && ph >= view.bodyH * 0.9, `${name}: the screenshot covers the page (${pw}×${ph})`);
    // A blank page of that size compresses to a few kilobytes; text, tables and plots do not.
    assert.ok(statSync(shot).size > 50_000, `${name}: the screenshot shows something (${statSync(shot).size} bytes)`);
    return { view, expected, shot };
  } finally {
    await context.close();
  }
}

test('report.html of a distillation run, in headless chromium: no errors, every plot draws data, screenshot written', { skip, timeout: 10 * HANG_MS }, async (t) => {
  const out = join(root, 'run');
  const record = await runDistillation(parseConfig(config(out)), { skipSpeed: true, progress: silent() });
  assert.deepEqual(record.models.map((m) => m.role), ['teacher', 'student-alone', 'student-distilled']);
  assert.ok(record.diagnosis, 'the run has a diagnosis');
  // Four training plots, the distilled student's loss terms, reliability and confusion.
  const { view, expected, shot } = await openReport('run', out, 7);
  assert.ok(expected.length >= 7, `the record implies ${expected.length} plots`);
  t.diagnostic(`${view.figures.length} plots checked; screenshot ${shot} (${statSync(shot).size} bytes)`);
});

test('report.html of a tune search, in headless chromium: the search section and its plots too', { skip, timeout: 10 * HANG_MS }, async (t) => {
  const out = join(root, 'tune');
  const cfg = config(out, {
    tune: { strategy: 'grid', space: { 'distill.terms[kd].temperature': [1, 4], 'distill.terms[kd].weight': [0.3, 0.7] } },
  });
  const { record } = await runTune(parseConfig(cfg), { skipSpeed: true, progress: silent() });
  assert.equal(record.tune?.trials.length, 4);
  const { view, expected, shot } = await openReport('tune', out, 9);
  assert.ok(view.headings.includes('Hyperparameter search'), 'the search section is there');
  assert.ok(expected.length >= 9, `the record implies ${expected.length} plots`);
  t.diagnostic(`${view.figures.length} plots checked; screenshot ${shot} (${statSync(shot).size} bytes)`);
});
