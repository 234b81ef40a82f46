import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync, mkdirSync } from 'node:fs';
import { dirname, basename, isAbsolute, join, resolve, sep } from 'node:path';
import { KdError } from '../errors.js';

/**
 * Writes a file so that a reader never sees it half-written: the bytes go to a temporary file in the
 * same folder, are fsynced, and the temporary file is renamed over the target (rename is atomic on POSIX).
 * A crash leaves either the old file or the new one, plus at worst a stray `*.tmp` file.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const dir = dirname(path);
  ensureDir(dir);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w');
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) {
      try { closeSync(fd); } catch { /* already failing */ }
    }
    try { unlinkSync(tmp); } catch { /* may not exist */ }
    throw unwritable(path, e);
  }
  // fsync the folder so the rename itself survives a power loss.
  try {
    const dfd = openSync(dir, 'r');
    try { fsyncSync(dfd); } finally { closeSync(dfd); }
  } catch { /* some file systems refuse fsync on folders; the rename is still atomic */ }
}

/**
 * mkdir -p, one level at a time. Node's recursive mkdir spins forever on some pseudo file systems (a folder
 * under /proc); creating each missing level ourselves fails fast with the real reason instead.
 */
export function ensureDir(dir: string): void {
  const full = resolve(dir);
  const parts = full.split(sep).filter(Boolean);
  let current: string = sep;
  for (const part of parts) {
    current = join(current, part);
    let exists = false;
    try {
      const st = statSync(current);
      if (!st.isDirectory()) throw unwritable(full, Object.assign(new Error('not a folder'), { code: 'ENOTDIR' }));
      exists = true;
    } catch (e) {
      if (e instanceof KdError) throw e;
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw unwritable(full, e);
    }
    if (!exists) {
      try {
        mkdirSync(current);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw unwritable(full, e);
      }
    }
  }
}

function unwritable(path: string, cause: unknown): KdError {
  const reason = cause instanceof Error && 'code' in cause ? String((cause as NodeJS.ErrnoException).code) : String(cause);
  const full = reason === 'ENOSPC' ? 'the disk is full' : reason;
  return new KdError('KD_OUTPUT_UNWRITABLE', `cannot write ${path} (${full})`, {
    fix: reason === 'ENOSPC' ? 'free disk space or choose another output folder' : 'choose an output folder you can write to (output: in the config, or --out)',
    cause,
  });
}

/**
 * For a "not found" fix: where a relative path was looked for. kdistill resolves relative paths in a config from the
 * current folder (as the examples assume: `npx kdistill run examples/x.yaml` from the project folder).
 */
export function whereResolved(path: string): string {
  if (isAbsolute(path)) return `${path} does not exist`;
  return `relative paths are resolved from the current folder, ${process.cwd()}, so ${path} was looked for at ${resolve(path)}; run kdistill from the folder the config's paths are relative to, or give absolute paths`;
}
