import { existsSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { KdError } from '../errors.js';
import { ensureDir, writeFileAtomic } from '../util/fs.js';

/**
 * An output folder as a small state machine, shared by `run` and `tune`: a lock file holding the owner's pid, a
 * progress file (the config and each finished phase) that exists exactly while the work is unfinished, and a
 * checkpoints folder for the phase in progress.
 */
export const CHECKPOINT_DIR = 'checkpoints';

export interface Lock {
  release(): void;
}

/** Creates the folder and probes that it is writable: finding out after an hour of training would lose the run. */
export function prepareOutput(out: string): void {
  ensureDir(out);
  const probe = join(out, '.write-test');
  writeFileAtomic(probe, 'ok');
  try {
    unlinkSync(probe);
  } catch {
    /* already gone */
  }
}

/**
 * One run per output folder: a lock file holding the owner's pid. A lock whose process is gone (a crash, a
 * SIGKILL) is stale and taken over; a live owner makes the second run refuse to start.
 */
export function acquireLock(out: string): Lock {
  const file = join(out, '.kdistill.lock');
  const mine = JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, mine, { flag: 'wx' });
      return {
        release: () => {
          try {
            if (readFileSync(file, 'utf8') === mine) unlinkSync(file);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new KdError('KD_OUTPUT_UNWRITABLE', `cannot create the lock file in ${out} (${(e as NodeJS.ErrnoException).code})`, { fix: 'choose an output folder you can write to' });
      }
      let owner: { pid?: number } = {};
      try {
        owner = JSON.parse(readFileSync(file, 'utf8')) as { pid?: number };
      } catch {
        /* unreadable: treat as stale */
      }
      if (owner.pid !== undefined && owner.pid !== process.pid && isAlive(owner.pid)) {
        throw new KdError('KD_OUTPUT_LOCKED', `another kdistill run (pid ${owner.pid}) is writing to ${out}`, {
          fix: 'wait for it to finish, stop it, or choose another output folder',
        });
      }
      rmSync(file, { force: true });
    }
  }
  throw new KdError('KD_OUTPUT_LOCKED', `could not take the lock of ${out}`, { fix: 'try again, or choose another output folder' });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A process killed mid-write leaves its temporary file (`.<name>.<pid>.<time>.tmp`) beside the intact target;
 * whoever holds the lock next removes them.
 */
export function removeStrayTemporaries(out: string, dirs: readonly string[] = [CHECKPOINT_DIR]): void {
  for (const dir of [out, ...dirs.map((d) => join(out, d))]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.startsWith('.') && f.endsWith('.tmp')) rmSync(join(dir, f), { force: true });
  }
}

/** Holds the lock of `out` (created and probed first) while `f` runs. */
export async function withOutputFolder<T>(dir: string, f: (out: string) => Promise<T>): Promise<T> {
  const out = resolve(dir);
  prepareOutput(out);
  const lock = acquireLock(out);
  try {
    removeStrayTemporaries(out);
    return await f(out);
  } finally {
    lock.release();
  }
}

/**
 * The progress file of a folder: JSON rewritten atomically after every finished step of the work. Reading one
 * that is damaged is a coded error naming the fix.
 */
export function readProgressFile<T>(file: string, what: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new KdError('KD_DATA_NOT_FOUND', `${file} does not exist: the folder holds no ${what} to resume`, { fix: 'pass the output folder of a run that was stopped' });
    }
    throw new KdError('KD_DATA_CORRUPT', `${file} is damaged (${(e as Error).message})`, { fix: 'start afresh into a new output folder' });
  }
}

/**
 * Refuses to start fresh work in a folder that holds unfinished work of the same command: an unfinished run has its
 * progress file (`progressFile`), an unfinished search a tune record (`tuneFile`) whose status is not done. `run`,
 * `tune` and `check` share it, so all three give the same error and fix.
 */
export function refuseUnfinished(out: string, output: string, work: { progressFile: string } | { tuneFile: string }): void {
  if ('progressFile' in work) {
    if (!existsSync(work.progressFile)) return;
    // A run stopped by a numeric fault would only fault again if resumed (the same steps replay exactly): new
    // settings are what it needs, so a fresh run may replace it.
    if (stoppedByFault(work.progressFile)) return;
    throw new KdError('KD_OUTPUT_EXISTS', `${out} holds an unfinished run`, {
      fix: `continue it with: kdistill run --resume ${output}  (or choose another output folder, or delete this one)`,
    });
  }
  if (existsSync(work.tuneFile) && readProgressFile<{ status?: string }>(work.tuneFile, 'search').status !== 'done') {
    throw new KdError('KD_OUTPUT_EXISTS', `${out} holds an unfinished search`, { fix: `continue it with: kdistill tune --resume ${output}  (or choose another output folder)` });
  }
}

/**
 * The files that say what an output folder holds, passed in by name (src/pipeline/run.ts and tune.ts define them and
 * import this module): `progress` exists exactly while a run is unfinished, `tune` holds a search (unfinished until
 * its status is done), `record` (run.json) is written when a run or a search has finished, `best` is a finished
 * search's chosen config.
 */
export interface FolderMarkers {
  progress: string;
  tune: string;
  record: string;
  best: string;
}

/**
 * The folder given to `kdistill run --resume` / `tune --resume`, checked before anything is read from it, so that a
 * mistake is named for what it is: a config file given instead of the folder (KD_USAGE), a folder whose run or
 * search already finished (KD_USAGE: nothing is left to resume; resuming a finished search would train its final
 * student again), the other command's work (KD_USAGE, with that command), or a folder holding no run at all
 * (KD_DATA_NOT_FOUND, as before). Returns when the folder holds unfinished work of `command`.
 */
export function checkResumable(dir: string, command: 'run' | 'tune', markers: FolderMarkers): void {
  const out = resolve(dir);
  const what = command === 'run' ? 'run' : 'search';
  if (!existsSync(out)) {
    throw new KdError('KD_DATA_NOT_FOUND', `${out} does not exist: there is no ${what} to resume`, { fix: `pass the output folder of a ${what} that was stopped (output: in its config, or its --out)` });
  }
  if (!statSync(out).isDirectory()) {
    // A folder's own progress or record file: the folder is meant. Anything else is taken for a config file.
    const fix = [markers.progress, markers.tune, markers.record].includes(basename(out))
      ? `kdistill ${command} --resume ${dirname(dir)}`
      : `kdistill ${command} ${dir}  (starts the ${what} this config describes; --resume continues one from its output folder)`;
    throw new KdError('KD_USAGE', `--resume takes the output folder of a stopped ${what}, and ${out} is a file`, { fix });
  }
  const has = (f: string) => existsSync(join(out, f));
  const search = has(markers.tune) ? readProgressFile<{ status?: string }>(join(out, markers.tune), 'search').status : undefined;
  if (command === 'run' && has(markers.progress)) {
    const fault = stoppedByFault(join(out, markers.progress));
    if (!fault) return;
    throw new KdError('KD_USAGE', `the run in ${out} stopped on a numeric fault (${fault}); resuming would replay the same steps into the same fault`, {
      fix: 'lower the learning rate in its config (or set runtime.lrBackoff) and run it again: kdistill run <config.yaml> replaces the stopped run in this folder',
    });
  }
  if (command === 'tune' && search !== undefined && search !== 'done') return;
  if (search !== undefined && search !== 'done') {
    throw new KdError('KD_USAGE', `${out} holds an unfinished search (${markers.tune}), not a run`, { fix: `continue it with: kdistill tune --resume ${dir}` });
  }
  if (command === 'tune' && has(markers.progress)) {
    throw new KdError('KD_USAGE', `${out} holds an unfinished run (${markers.progress}), not a search`, { fix: `continue it with: kdistill run --resume ${dir}` });
  }
  if (search === 'done') {
    throw new KdError('KD_USAGE', `the search in ${out} already finished (${markers.tune}, ${markers.record}): nothing is left to resume`, {
      fix: `its results are in ${join(dir, markers.record)} and the report beside it; the chosen config runs with: kdistill run ${join(dir, markers.best)}`,
    });
  }
  if (has(markers.record)) {
    throw new KdError('KD_USAGE', `the run in ${out} already finished (${markers.record}): nothing is left to resume`, {
      fix: `its results are in ${join(dir, markers.record)} and the report beside it; to train again, run its config (kdistill run <config.yaml>), with --out <a new folder> to keep these results`,
    });
  }
  throw new KdError('KD_DATA_NOT_FOUND', `${out} holds no ${what} to resume (no ${command === 'run' ? markers.progress : markers.tune})`, { fix: `pass the output folder of a ${what} that was stopped (output: in its config, or its --out)` });
}

/**
 * What stopped a run for good, as its progress file records it (src/pipeline/run.ts): the numeric fault's message,
 * or undefined for a run that was only interrupted (or a file that cannot be read, which resuming reports).
 */
export function stoppedByFault(progressFile: string): string | undefined {
  try {
    const p = JSON.parse(readFileSync(progressFile, 'utf8')) as { fault?: unknown };
    return typeof p.fault === 'string' ? p.fault : undefined;
  } catch {
    return undefined;
  }
}
