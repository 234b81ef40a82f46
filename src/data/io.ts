import { readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { KdError } from '../errors.js';
import { whereResolved } from '../util/fs.js';

/**
 * Reads a whole data file, gunzipping it when it starts with the gzip magic bytes. Detection is by content, not
 * by the `.gz` suffix, because MNIST mirrors ship both forms under both names.
 * Every failure becomes a KdError naming the file: a raw ENOENT or zlib stack would tell a user nothing.
 */
export function readDataFile(path: string): Buffer {
  let raw: Buffer;
  try {
    // A device or pipe (/dev/zero) would be read without end: only regular files are data files.
    const st = statSync(path);
    if (!st.isFile() && !st.isDirectory()) {
      throw new KdError('KD_DATA_NOT_FOUND', `cannot read data file ${path}: it is not a regular file`, { fix: 'point the config at a data file' });
    }
    raw = readFileSync(path);
  } catch (e) {
    if (e instanceof KdError) throw e;
    const code = (e as NodeJS.ErrnoException)?.code;
    const why =
      code === 'ENOENT' ? 'the file does not exist'
      : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
      : code === 'EISDIR' ? 'it is a folder, not a file'
      : String(code ?? e);
    throw new KdError('KD_DATA_NOT_FOUND', `cannot read data file ${path}: ${why}`, {
      fix: code === 'ENOENT' ? `check the path: ${whereResolved(path)}` : 'check the path and its permissions',
      cause: e,
    });
  }
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return gunzipSync(raw);
    } catch (e) {
      throw new KdError('KD_DATA_CORRUPT', `${path} starts like a gzip file but cannot be decompressed (${(e as Error).message})`, {
        fix: 'the download was probably cut short; download the file again',
        cause: e,
      });
    }
  }
  return raw;
}
