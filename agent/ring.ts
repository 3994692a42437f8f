/**
 * The output ring: the most recent PTY output, numbered by stream offset, so that a client that
 * returns with the offset it last saw gets exactly the bytes it missed.
 */
export class OutputRing {
  private chunks: Uint8Array[] = [];
  private size = 0;
  /** Offset of the first byte still held. */
  start = 0;
  /** Offset one past the last byte written (the stream's length so far). */
  end = 0;

  constructor(readonly capacity: number) {}

  append(data: Uint8Array): number {
    const offset = this.end;
    this.chunks.push(data);
    this.size += data.length;
    this.end += data.length;
    while (this.size > this.capacity && this.chunks.length > 1) {
      const first = this.chunks.shift() as Uint8Array;
      this.size -= first.length;
      this.start += first.length;
    }
    return offset;
  }

  /** The bytes from `from` to the end; null when `from` is no longer (or not yet) held. */
  since(from: number): Uint8Array | null {
    if (from < this.start || from > this.end) return null;
    const out = new Uint8Array(this.end - from);
    let pos = this.start;
    let at = 0;
    for (const chunk of this.chunks) {
      const chunkEnd = pos + chunk.length;
      if (chunkEnd > from) {
        const part = pos >= from ? chunk : chunk.subarray(from - pos);
        out.set(part, at);
        at += part.length;
      }
      pos = chunkEnd;
    }
    return out;
  }
}
