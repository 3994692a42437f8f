/**
 * Tracks the terminal modes a remote program switches on (alternate screen, mouse reporting,
 * bracketed paste, application cursor keys, focus events, kitty keyboard flags), so the local
 * terminal can be put back exactly as it was on every exit path (the CLI), and so a screen mirror
 * that skipped output can be put back into the modes the skipped part switched on (the agent).
 *
 * Output arrives in chunks cut anywhere, so this is a small incremental parser of escape
 * sequences (the shape of the VT500 parser: ground, escape, CSI, and OSC/DCS/APC strings) that
 * carries a partial sequence over to the next chunk. It keeps only what it needs — a CSI's prefix
 * and first few parameters — so its state is a few numbers whatever the input. Plain text is
 * skipped with `indexOf(ESC)`, so the cost per output byte stays close to nothing.
 */

/** Modes worth undoing, and the sequence that undoes each. */
const RESETTABLE = new Map<number, string>([
  [1, "\x1b[?1l\x1b>"],
  [25, ""],
  [47, "\x1b[?47l"],
  [1047, "\x1b[?1047l"],
  [1049, "\x1b[?1049l"],
  [9, "\x1b[?9l"],
  [1000, "\x1b[?1000l"],
  [1002, "\x1b[?1002l"],
  [1003, "\x1b[?1003l"],
  [1004, "\x1b[?1004l"],
  [1005, "\x1b[?1005l"],
  [1006, "\x1b[?1006l"],
  [1015, "\x1b[?1015l"],
  [2004, "\x1b[?2004l"],
]);

const ESC = 0x1b;
const BEL = 0x07;
const CAN = 0x18;
const SUB = 0x1a;
/** Parameters kept per CSI; the rest of a longer list is read but not kept. */
const MAX_PARAMS = 16;
/** Kitty keyboard stack entries we undo at most (terminals cap the stack too). */
const MAX_KITTY_DEPTH = 64;

const GROUND = 0;
const ESCAPE = 1;
const CSI = 2;
/** OSC, DCS, APC, PM, SOS: a string up to BEL or ST (ESC \), whose content we skip. */
const STRING = 3;

export class ModeTracker {
  private readonly on = new Set<number>();
  private kittyDepth = 0;
  private state = GROUND;
  /** The current CSI: its private prefix (`?`, `>`, `<`, `=`; 0 for none), parameters, intermediates. */
  private prefix = 0;
  private readonly params = new Array<number>(MAX_PARAMS).fill(0);
  private count = 0;
  private intermediate = false;

  feed(data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const n = bytes.length;
    let i = 0;
    while (i < n) {
      if (this.state === GROUND) {
        i = bytes.indexOf(ESC, i);
        if (i < 0) return;
        this.state = ESCAPE;
        i++;
        continue;
      }
      if (this.state === STRING) {
        // Skip to the string's end: BEL, or ESC (of ST, or of whatever aborts the string).
        let j = i;
        while (j < n && bytes[j] !== BEL && bytes[j] !== ESC) j++;
        if (j === n) return;
        this.state = bytes[j] === ESC ? ESCAPE : GROUND;
        i = j + 1;
        continue;
      }
      const b = bytes[i] as number;
      i++;
      if (this.state === ESCAPE) this.escape(b);
      else this.csi(b);
    }
  }

  private escape(b: number): void {
    switch (b) {
      case 0x5b: // [
        this.state = CSI;
        this.prefix = 0;
        this.count = 0;
        this.params[0] = 0;
        this.intermediate = false;
        return;
      case 0x5d: // ]
      case 0x50: // P
      case 0x5f: // _
      case 0x5e: // ^
      case 0x58: // X
        this.state = STRING;
        return;
      case ESC:
        return;
      default:
        this.state = GROUND;
    }
  }

  private csi(b: number): void {
    if (b >= 0x30 && b <= 0x39) {
      if (this.count === 0) this.count = 1;
      if (this.count <= MAX_PARAMS) {
        const k = this.count - 1;
        // Capped so a run of digits cannot grow the number without bound.
        this.params[k] = Math.min((this.params[k] as number) * 10 + (b - 0x30), 1e7);
      }
      return;
    }
    if (b === 0x3b || b === 0x3a) {
      // ; and : (sub-parameters are folded in as parameters; no mode we track uses them).
      if (this.count === 0) this.count = 1;
      this.count++;
      if (this.count <= MAX_PARAMS) this.params[this.count - 1] = 0;
      return;
    }
    if (b >= 0x3c && b <= 0x3f) {
      // < = > ? : a private prefix, valid only first.
      if (this.count === 0 && this.prefix === 0) this.prefix = b;
      else this.intermediate = true; // malformed: ignore the sequence
      return;
    }
    if (b >= 0x20 && b <= 0x2f) {
      this.intermediate = true;
      return;
    }
    if (b >= 0x40 && b <= 0x7e) {
      this.state = GROUND;
      if (!this.intermediate) this.dispatch(b);
      return;
    }
    if (b === ESC) {
      this.state = ESCAPE;
      return;
    }
    if (b === CAN || b === SUB) this.state = GROUND;
    // Other C0 controls inside a CSI are executed by the terminal and do not end it.
  }

  private dispatch(final: number): void {
    const kept = Math.min(this.count, MAX_PARAMS);
    if (this.prefix === 0x3f && (final === 0x68 || final === 0x6c)) {
      // CSI ? Pm h / l
      for (let k = 0; k < kept; k++) {
        const mode = this.params[k] as number;
        if (!RESETTABLE.has(mode)) continue;
        if (final === 0x68) this.on.add(mode);
        else this.on.delete(mode);
      }
      return;
    }
    if (final !== 0x75) return; // u
    if (this.prefix === 0x3e) {
      // CSI > flags u: push kitty keyboard flags
      this.kittyDepth = Math.min(this.kittyDepth + 1, MAX_KITTY_DEPTH);
    } else if (this.prefix === 0x3c) {
      // CSI < n u: pop n entries (default 1)
      const pops = kept > 0 && (this.params[0] as number) > 0 ? (this.params[0] as number) : 1;
      this.kittyDepth = Math.max(0, this.kittyDepth - pops);
    }
  }

  /** Forgets everything (a full screen repaint follows). */
  reset(): void {
    this.on.clear();
    this.kittyDepth = 0;
    this.state = GROUND;
  }

  /** The sequence that switches on the modes that are on now (cursor visibility aside). */
  activeSequence(): string {
    let out = "";
    for (const mode of this.on) if (mode !== 25) out += `\x1b[?${mode}h`;
    return out;
  }

  /** The sequence that returns the terminal to its normal state. */
  restoreSequence(): string {
    let out = "";
    for (const mode of this.on) out += RESETTABLE.get(mode) ?? "";
    out += "\x1b[<u".repeat(this.kittyDepth);
    return `${out}\x1b[0m\x1b[?25h`;
  }
}
