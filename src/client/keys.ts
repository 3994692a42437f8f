/**
 * Detach detection on the raw input stream: Ctrl+C twice within a second detaches. The first
 * Ctrl+C still goes to the program (so a single Ctrl+C works as always); Ctrl+C inside a bracketed
 * paste, or with another key in between, never counts.
 */
const CTRL_C = 0x03;
const PASTE_START = "\x1b[200~";
const PASTE_END = "\x1b[201~";
/** Ctrl+C as sent by terminals with the kitty keyboard protocol enabled. */
const KITTY_CTRL_C = /^\x1b\[99;5(?::1)?u/;

export class DetachDetector {
  private lastCtrlC = -Infinity;
  private inPaste = false;

  constructor(
    private readonly windowMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Returns the bytes to forward, and whether the user asked to detach. */
  feed(chunk: Uint8Array): { forward: Uint8Array; detach: boolean } {
    const text = Buffer.from(chunk).toString("latin1");
    let i = 0;
    while (i < text.length) {
      if (text.startsWith(PASTE_START, i)) {
        this.inPaste = true;
        this.lastCtrlC = -Infinity;
        i += PASTE_START.length;
        continue;
      }
      if (text.startsWith(PASTE_END, i)) {
        this.inPaste = false;
        i += PASTE_END.length;
        continue;
      }
      if (this.inPaste) {
        i++;
        continue;
      }
      const kitty = text.charCodeAt(i) === 0x1b ? KITTY_CTRL_C.exec(text.slice(i)) : null;
      if (text.charCodeAt(i) === CTRL_C || kitty) {
        const t = this.now();
        if (t - this.lastCtrlC <= this.windowMs) {
          this.lastCtrlC = -Infinity;
          return { forward: chunk.subarray(0, i), detach: true };
        }
        this.lastCtrlC = t;
        i += kitty ? kitty[0].length : 1;
        continue;
      }
      this.lastCtrlC = -Infinity;
      i++;
    }
    return { forward: chunk, detach: false };
  }
}
