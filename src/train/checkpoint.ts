import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { KdError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';

/**
 * A checkpoint is one file: `KDCKPT01`, a little-endian uint32 header length, a JSON header, then the raw bytes of
 * every tensor. The header carries a CRC-32 of the tensor bytes, so a damaged file is detected on load instead of
 * resuming from garbage. Files are written atomically (temporary file, fsync, rename): the previous checkpoint stays
 * in place until the new one is complete.
 */
const MAGIC = 'KDCKPT01';

export interface CheckpointTensor {
  name: string;
  data: Float32Array | Int32Array;
}

interface TensorEntry {
  name: string;
  dtype: 'float32' | 'int32';
  offset: number;
  length: number;
}

interface Header<S> {
  version: 1;
  crc: number;
  tensors: TensorEntry[];
  state: S;
}

export function writeCheckpoint<S>(path: string, state: S, tensors: readonly CheckpointTensor[]): void {
  let size = 0;
  const entries: TensorEntry[] = tensors.map((t) => {
    const e: TensorEntry = { name: t.name, dtype: t.data instanceof Float32Array ? 'float32' : 'int32', offset: size, length: t.data.length };
    size += t.data.byteLength;
    return e;
  });
  const payload = new Uint8Array(size);
  tensors.forEach((t, i) => payload.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), entries[i]!.offset));
  const header: Header<S> = { version: 1, crc: crc32(payload), tensors: entries, state };
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.alloc(8 + 4 + head.length + payload.length);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(head.length, 8);
  head.copy(out, 12);
  out.set(payload, 12 + head.length);
  writeFileAtomic(path, out);
}

export function readCheckpoint<S>(path: string): { state: S; tensors: Map<string, Float32Array | Int32Array> } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new KdError('KD_DATA_NOT_FOUND', `cannot read checkpoint ${path} (${(e as NodeJS.ErrnoException).code ?? e})`, { fix: 'check the folder given to --resume' });
  }
  const corrupt = (why: string) =>
    new KdError('KD_DATA_CORRUPT', `checkpoint ${path} is damaged (${why})`, {
      fix: 'delete this checkpoint file to restart the phase from its beginning (finished phases are kept)',
    });
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw corrupt('not a kdistill checkpoint');
  const headLen = buf.readUInt32LE(8);
  if (12 + headLen > buf.length) throw corrupt('truncated header');
  let header: Header<S>;
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + headLen)) as Header<S>;
  } catch {
    throw corrupt('unreadable header');
  }
  const payload = buf.subarray(12 + headLen);
  if (header.version !== 1) throw corrupt(`unknown version ${header.version}`);
  if (crc32(payload) !== header.crc) throw corrupt('checksum mismatch');
  const tensors = new Map<string, Float32Array | Int32Array>();
  for (const e of header.tensors) {
    // Copy into fresh, aligned buffers: the file buffer's offset need not be 4-byte aligned.
    const bytes = payload.subarray(e.offset, e.offset + e.length * 4);
    if (bytes.length !== e.length * 4) throw corrupt(`tensor ${e.name} is truncated`);
    const copy = new Uint8Array(bytes);
    tensors.set(e.name, e.dtype === 'float32' ? new Float32Array(copy.buffer) : new Int32Array(copy.buffer));
  }
  return { state: header.state, tensors };
}
