import { existsSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
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
    throw new KdError('KD_OUTPUT_EXISTS', `${out} holds an unfinished run`, {
      fix: `continue it with: kdistill run --resume ${output}  (or choose another output folder, or delete this one)`,
    });
  }
  if (existsSync(work.tuneFile) && readProgressFile<{ status?: string }>(work.tuneFile, 'search').status !== 'done') {
    throw new KdError('KD_OUTPUT_EXISTS', `${out} holds an unfinished search`, { fix: `continue it with: kdistill tune --resume ${output}  (or choose another output folder)` });
  }
}
