import cliProgress from 'cli-progress';
import { cursorTo, clearLine } from 'node:readline';
import { fmtInt, fmtNumber, fmtRate, fmtSeconds } from './table.js';

/**
 * Progress for training phases and evaluation.
 *
 * On a terminal, a live bar: `train student  [=====-----]  48% | 28,800/60,000 samples | 12.3k samples/s | ETA 2.5 s | loss=0.21 acc=0.94`.
 * When `quiet`, or when the stream is not a terminal (CI logs, `> file`), nothing is printed per update and each
 * finished phase prints ONE line, so logs stay short:
 * `train student: 60,000 samples in 4.88 s, 12.3k samples/s, loss=0.1934 acc=0.9461`.
 * On a terminal the bar is replaced by that same line when the phase stops, so a scrolled-back log reads the same.
 */
export interface ProgressOptions {
  quiet: boolean;
  /** Default: process.stderr, so progress never mixes with results printed on stdout. */
  stream?: ProgressStream;
}

/** The part of a stream the reporter uses; `process.stderr` is one, and so is a test's fake. */
export interface ProgressStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export type ProgressFields = Record<string, string | number>;

export interface PhaseHandle {
  /** `done` is the count so far (not an increment); `fields` are shown after the bar, e.g. `{ loss: 0.21, acc: '94.1%' }`. */
  update(done: number, fields?: ProgressFields): void;
  /** Ends the phase and prints its one-line result; `summaryLine` is appended to that line. Safe to call twice. */
  stop(summaryLine?: string): void;
}

export interface Progress {
  start(label: string, total: number, unit: string): PhaseHandle;
  /** Prints a line above an active bar (the bar is redrawn below it), or plainly when no bar is shown. */
  log(line: string): void;
}

/** How far back the live rate looks: long enough to smooth step jitter, short enough to follow a slowdown. */
const RATE_WINDOW_MS = 3000;
const MIN_BAR = 10;
const MAX_BAR = 30;

/**
 * cli-progress re-arms a timer after every render; a referenced timer would keep Node alive if a caller forgot
 * stop() on an error path, so the CLI would hang instead of exiting. Unreferencing it after each render fixes that.
 */
class UnrefBar extends cliProgress.SingleBar {
  override render(): void {
    super.render();
    (this as unknown as { timer: NodeJS.Timeout | null }).timer?.unref();
  }
}

interface PhaseState {
  label: string;
  total: number;
  unit: string;
  startMs: number;
  done: number;
  fields: ProgressFields;
  /** Recent (time, done) samples for the live rate. */
  window: { t: number; done: number }[];
  stopped: boolean;
  /** Current width of the live bar in characters. */
  barSize: number;
}

export function createProgress(options: ProgressOptions): Progress {
  const stream: ProgressStream = options.stream ?? process.stderr;
  const live = !options.quiet && stream.isTTY === true;
  let active: { state: PhaseState; bar: UnrefBar | undefined; handle: PhaseHandle } | undefined;

  function write(s: string): void {
    stream.write(s);
  }

  function clearBarLine(): void {
    const s = stream as unknown as NodeJS.WritableStream;
    cursorTo(s, 0);
    clearLine(s, 0);
  }

  function start(label: string, total: number, unit: string): PhaseHandle {
    // One bar at a time: a phase started while another is open finishes the old one first.
    active?.handle.stop();
    const now = performance.now();
    const state: PhaseState = { label, total, unit, startMs: now, done: 0, fields: {}, window: [{ t: now, done: 0 }], stopped: false, barSize: MAX_BAR };
    let bar: UnrefBar | undefined;
    if (live) {
      bar = new UnrefBar({
        stream: stream as unknown as NodeJS.WritableStream,
        format: (_options, params) => liveLine(state, performance.now(), params.maxWidth),
        fps: 10,
        // Trim to the terminal width instead of toggling the terminal's wrap mode, which a crash would leave off.
        linewrap: true,
        hideCursor: false,
        gracefulExit: false,
        // log() clears the bar's line; the next frame must redraw it even if the text has not changed.
        forceRedraw: true,
        // stop() erases the bar; the phase's one-line result is written in its place.
        clearOnComplete: true,
      });
      bar.start(total, 0);
    }

    const handle: PhaseHandle = {
      update(done, fields) {
        if (state.stopped) return;
        const t = performance.now();
        state.done = done;
        if (fields !== undefined) Object.assign(state.fields, fields);
        // Sample at most 10 times a second: a per-step update must not grow the window without bound.
        if (t - state.window[state.window.length - 1]!.t >= 100) state.window.push({ t, done });
        while (state.window.length > 2 && t - state.window[1]!.t > RATE_WINDOW_MS) state.window.shift();
        bar?.update(Math.min(done, total));
      },
      stop(summaryLine) {
        if (state.stopped) return;
        state.stopped = true;
        const line = finalLine(state, performance.now(), summaryLine);
        // On a terminal the bar is erased and replaced by the same one line a log file gets.
        bar?.stop();
        write(line + '\n');
        if (active?.state === state) active = undefined;
      },
    };
    active = { state, bar, handle };
    return handle;
  }

  function log(line: string): void {
    if (active?.bar !== undefined && !active.state.stopped) {
      clearBarLine();
      write(line + '\n');
      // SingleBar saves the cursor at start and restores it in stop(); the bar now lives one line lower.
      write('\x1b7');
      active.bar.render();
    } else {
      write(line + '\n');
    }
  }

  return { start, log };
}

function fieldsText(fields: ProgressFields): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? fmtNumber(v) : v}`)
    .join(' ');
}

function liveRate(state: PhaseState, now: number): number {
  const first = state.window[0]!;
  const dt = (now - first.t) / 1000;
  return dt > 0 ? (state.done - first.done) / dt : 0;
}

/**
 * One frame of the live bar, fitted to `maxWidth` columns: the bar shrinks first (down to MIN_BAR) so that the
 * rate, ETA and fields stay visible on an 80-column terminal; whatever still does not fit is cut at the right.
 */
function liveLine(state: PhaseState, now: number, maxWidth: number): string {
  const frac = state.total > 0 ? Math.min(1, Math.max(0, state.done / state.total)) : 1;
  const rate = liveRate(state, now);
  const remaining = Math.max(0, state.total - state.done);
  const eta = rate > 0 ? fmtSeconds(remaining / rate) : '—';
  const tail = [
    `${fmtInt(state.done)}/${fmtInt(state.total)}`,
    state.done > 0 && rate > 0 ? fmtRate(rate, state.unit) : `— ${state.unit}/s`,
    `ETA ${eta}`,
  ];
  const f = fieldsText(state.fields);
  if (f !== '') tail.push(f);
  const pct = `${(frac * 100).toFixed(0).padStart(3)}%`;
  const rest = ` ${pct} | ${tail.join(' | ')}`;
  // cli-progress keeps a 2-column margin; the label and one space sit before the bar.
  const room = maxWidth - 2 - [...state.label].length - 1 - [...rest].length;
  // The bar only ever shrinks within a phase, so it does not flicker as the rate's digits come and go.
  const size = Math.max(MIN_BAR, Math.min(MAX_BAR, room, state.barSize));
  state.barSize = size;
  const full = Math.round(frac * size);
  return `${state.label} ${'█'.repeat(full)}${'░'.repeat(size - full)}${rest}`;
}

function finalLine(state: PhaseState, now: number, summaryLine: string | undefined): string {
  const seconds = (now - state.startMs) / 1000;
  const count =
    state.done >= state.total ? `${fmtInt(state.total)} ${state.unit}` : `${fmtInt(state.done)}/${fmtInt(state.total)} ${state.unit} (stopped early)`;
  const parts = [`${state.label}: ${count} in ${fmtSeconds(seconds)}`, seconds > 0 ? fmtRate(state.done / seconds, state.unit) : undefined];
  const f = fieldsText(state.fields);
  if (f !== '') parts.push(f);
  let line = parts.filter((p) => p !== undefined).join(', ');
  if (summaryLine !== undefined && summaryLine !== '') line += ` — ${summaryLine}`;
  return line;
}
