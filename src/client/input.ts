/**
 * The one reader of what the user types while attached: it parses the raw input once into events
 * — runs of plain keys, escape sequences, bracketed pastes, the terminal's cursor reports — and
 * the ways to detach (`ctrl-c-twice.ts`, `escape-keys.ts`), the cursor report wait
 * (`cursor-report.ts`) and pasted files (`attach.ts`) consume events instead of scanning bytes of
 * their own. What nobody consumes goes to the program as the bytes that came.
 *
 * Input arrives in reads cut anywhere; the events are the same however the reads are cut. A key
 * never waits for the next read when it could be whole: a read ending in `ESC` (the Escape key),
 * `ESC [` (Alt+[) or `ESC O` (Alt+O) passes those bytes on at once as a `head`, and the event they
 * begin says how many of its bytes went ahead (`sent`); a consumer that keeps such a key passes
 * the rest on, so the program never holds half a key. A sequence cut later than that cannot be a
 * whole key: it is held until its end comes (the terminal writes a key in one go), or until
 * `flush()` (the caller's short timer) gives up on it. So a paste's start marker cut by a read
 * past `ESC [` is still a paste.
 *
 * A paste is held until its end marker and comes as one event; one longer than `MAX_HELD_PASTE`
 * (it is not a list of dropped files), or whose start marker began to go ahead, passes on as it
 * comes (`pasting` pieces, an end marker cut by a read held back).
 */

const ESC = 0x1b;
const START = Buffer.from("\x1b[200~");
const END = Buffer.from("\x1b[201~");
/** Escape sequences longer than this are not keys; they end as ordinary input. */
const MAX_SEQUENCE = 32;
/** A paste longer than this is not a list of dropped files: it goes on as it comes. */
const MAX_HELD_PASTE = 64 * 1024;

export type InputEvent =
  /** Plain keys: bytes without an ESC, each a key (typed text, Enter, Ctrl+C…). */
  | { kind: "text"; raw: Uint8Array }
  /** One escape sequence: a CSI or SS3 key, Alt+key, or the Escape key. `sent`: bytes that went ahead. */
  | { kind: "key"; raw: Uint8Array; sent: number }
  /** The terminal's answer to a cursor position query (`ESC [ row ; col R`), 0-based. */
  | { kind: "cursor"; raw: Uint8Array; sent: number; row: number; col: number }
  /** A whole bracketed paste, markers included; `text` between them. */
  | { kind: "paste"; raw: Uint8Array; text: string }
  /** A piece of a paste not held (too long, or its start went ahead), markers included. */
  | { kind: "pasting"; raw: Uint8Array }
  /** The beginning of an escape sequence cut by a read, passed on ahead of its event. */
  | { kind: "head"; raw: Uint8Array };

/** The bytes of an event that have not gone to the program yet. */
export function unsent(ev: InputEvent): Uint8Array {
  return ev.kind === "key" || ev.kind === "cursor" ? ev.raw.subarray(ev.sent) : ev.raw;
}

/** A paste of `text`, as a terminal sends it. */
export function pasteEvent(text: string): InputEvent {
  return { kind: "paste", raw: new TextEncoder().encode(`\x1b[200~${text}\x1b[201~`), text };
}

/** The bytes of the events that have not gone yet, in one array. */
export function unsentBytes(events: InputEvent[]): Uint8Array {
  const parts = events.map(unsent);
  if (parts.length === 1) return parts[0] as Uint8Array;
  return Buffer.concat(parts);
}

const GROUND = 0;
const ESCAPE = 1;
const CSI = 2;
/** After ESC O: one more byte ends the key (F1-F4, keypad and arrows in application mode). */
const SS3 = 3;

/** How many bytes at the end of `buf` could begin `marker` (a marker cut by the read). */
function partialSuffix(buf: Buffer, marker: Buffer): number {
  for (let n = Math.min(marker.length - 1, buf.length); n > 0; n--) {
    if (buf.subarray(buf.length - n).equals(marker.subarray(0, n))) return n;
  }
  return 0;
}

export class InputReader {
  private state = GROUND;
  /** The escape sequence being read. */
  private seq: number[] = [];
  /** How many of `seq` went ahead as heads. */
  private sent = 0;
  /** In a paste: what is held of it (from its start marker on, unless passing through). */
  private paste: Buffer | null = null;
  private passing = false;

  /** Whether the end of a sequence is awaited with some of it held (`flush` gives up on it). */
  get holding(): boolean {
    return this.state !== GROUND && this.seq.length > this.sent;
  }

  feed(chunk: Uint8Array): InputEvent[] {
    const out: InputEvent[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.paste) {
        i = this.pasteBytes(chunk, i, out);
        continue;
      }
      if (this.state === GROUND) {
        const at = chunk.indexOf(ESC, i);
        const end = at === -1 ? chunk.length : at;
        if (end > i) out.push({ kind: "text", raw: chunk.subarray(i, end) });
        if (at === -1) break;
        this.begin();
        i = at + 1;
        continue;
      }
      if (this.byte(chunk[i] as number, out)) i++;
    }
    if (this.state !== GROUND && !this.paste) this.cut(out);
    return out;
  }

  /** Gives up waiting for the end of a held sequence: what is held goes on as a head. */
  flush(): InputEvent[] {
    if (!this.holding) return [];
    const raw = Uint8Array.from(this.seq.slice(this.sent));
    this.sent = this.seq.length;
    return [{ kind: "head", raw }];
  }

  private begin(): void {
    this.state = ESCAPE;
    this.seq = [ESC];
    this.sent = 0;
  }

  /** At the end of a read, mid-sequence: what could be a whole key goes ahead; the rest is held. */
  private cut(out: InputEvent[]): void {
    if (this.state === CSI && this.seq.length >= 3) return;
    if (this.seq.length === this.sent) return;
    out.push({ kind: "head", raw: Uint8Array.from(this.seq.slice(this.sent)) });
    this.sent = this.seq.length;
  }

  /** One byte of an escape sequence; false when the byte is to be read again (in ground). */
  private byte(b: number, out: InputEvent[]): boolean {
    switch (this.state) {
      case ESCAPE:
        if (b === 0x5b || b === 0x4f) {
          this.seq.push(b);
          this.state = b === 0x5b ? CSI : SS3;
          return true;
        }
        if (b === ESC) {
          this.key(out);
          this.begin();
          return true;
        }
        if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) {
          // The Escape key, then a control key (Alt+Tab and Alt+Enter are keys of their own).
          this.key(out);
          return false;
        }
        this.seq.push(b); // Alt+key
        this.key(out);
        return true;
      case SS3:
        if (b === ESC) {
          this.key(out);
          this.begin();
          return true;
        }
        this.seq.push(b);
        this.key(out);
        return true;
      default:
        // CSI
        if (b === ESC) {
          // Cut short: that was some other key, and a new sequence begins.
          this.key(out);
          this.begin();
          return true;
        }
        this.seq.push(b);
        if (b >= 0x40 && b <= 0x7e) this.final(out);
        else if (this.seq.length > MAX_SEQUENCE) this.key(out);
        return true;
    }
  }

  /** A CSI is complete: a paste begins, a cursor report, or a key. */
  private final(out: InputEvent[]): void {
    const raw = Uint8Array.from(this.seq);
    const sent = this.sent;
    this.state = GROUND;
    this.seq = [];
    this.sent = 0;
    if (START.equals(raw)) {
      if (sent === 0) {
        this.paste = Buffer.from(raw);
        this.passing = false;
      } else {
        // Its start went ahead: it can only go on as it comes.
        this.paste = Buffer.alloc(0);
        this.passing = true;
        out.push({ kind: "pasting", raw: raw.subarray(sent) });
      }
      return;
    }
    const m = /^\x1b\[(\d{1,5});(\d{1,5})R$/.exec(Buffer.from(raw).toString("latin1"));
    if (m) out.push({ kind: "cursor", raw, sent, row: Math.max(0, Number(m[1]) - 1), col: Math.max(0, Number(m[2]) - 1) });
    else out.push({ kind: "key", raw, sent });
  }

  /** The sequence read so far is a key of its own. */
  private key(out: InputEvent[]): void {
    out.push({ kind: "key", raw: Uint8Array.from(this.seq), sent: this.sent });
    this.state = GROUND;
    this.seq = [];
    this.sent = 0;
  }

  /** Input from `i` inside a paste; returns where the paste's end left the chunk. */
  private pasteBytes(chunk: Uint8Array, i: number, out: InputEvent[]): number {
    const before = (this.paste as Buffer).length;
    const buf = Buffer.concat([this.paste as Buffer, chunk.subarray(i)]);
    const end = buf.indexOf(END, this.passing ? 0 : START.length);
    if (end === -1) {
      if (!this.passing && buf.length > MAX_HELD_PASTE) this.passing = true;
      if (this.passing) {
        const keep = partialSuffix(buf, END);
        if (buf.length - keep > 0) out.push({ kind: "pasting", raw: buf.subarray(0, buf.length - keep) });
        this.paste = Buffer.from(buf.subarray(buf.length - keep));
      } else this.paste = buf;
      return chunk.length;
    }
    const whole = buf.subarray(0, end + END.length);
    if (this.passing) out.push({ kind: "pasting", raw: whole });
    else out.push({ kind: "paste", raw: whole, text: whole.subarray(START.length, end).toString("utf8") });
    this.paste = null;
    this.passing = false;
    return i + whole.length - before;
  }
}

/** One read's events, as if nothing more came for a while (what is held goes on): for callers that feed bytes. */
export function readAll(reader: InputReader, chunk: Uint8Array): InputEvent[] {
  return [...reader.feed(chunk), ...reader.flush()];
}
