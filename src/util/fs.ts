import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync, mkdirSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { KdError } from '../errors.js';

/**
 * Writes a file so that a reader never sees it half-written: the bytes go to a temporary file in the
 * same folder, are fsynced, and the temporary file is renamed over the target (rename is atomic on POSIX).
 * A crash leaves either the old file or the new one, plus at worst a stray `*.tmp` file.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw unwritable(dir, e);
  }
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

function unwritable(path: string, cause: unknown): KdError {
  const reason = cause instanceof Error && 'code' in cause ? String((cause as NodeJS.ErrnoException).code) : String(cause);
  const full = reason === 'ENOSPC' ? 'the disk is full' : reason;
  return new KdError('KD_OUTPUT_UNWRITABLE', `cannot write ${path} (${full})`, {
    fix: reason === 'ENOSPC' ? 'free disk space or choose another output folder' : 'choose an output folder you can write to (output: in the config, or --out)',
    cause,
  });
}
