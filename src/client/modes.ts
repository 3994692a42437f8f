/**
 * Tracks the terminal modes a remote program switches on (alternate screen, mouse reporting,
 * bracketed paste, application cursor keys, hidden cursor, kitty keyboard), so the local terminal
 * can be put back exactly as it was on every exit path.
 */
const PRIVATE_MODE = /\x1b\[\?([\d;]+)([hl])/g;
const KITTY_PUSH = /\x1b\[>\d*u/g;
const KITTY_POP = /\x1b\[<\d*u/g;

/** Modes worth undoing, and the sequence that undoes each. */
const RESETTABLE: Record<string, string> = {
  "1": "\x1b[?1l\x1b>",
  "25": "",
  "47": "\x1b[?47l",
  "1047": "\x1b[?1047l",
  "1049": "\x1b[?1049l",
  "1000": "\x1b[?1000l",
  "1002": "\x1b[?1002l",
  "1003": "\x1b[?1003l",
  "1004": "\x1b[?1004l",
  "1005": "\x1b[?1005l",
  "1006": "\x1b[?1006l",
  "1015": "\x1b[?1015l",
  "2004": "\x1b[?2004l",
};

export class ModeTracker {
  private readonly on = new Set<string>();
  private kittyDepth = 0;

  feed(data: Uint8Array | string): void {
    const text = typeof data === "string" ? data : Buffer.from(data).toString("latin1");
    if (!text.includes("\x1b[")) return;
    for (const m of text.matchAll(PRIVATE_MODE)) {
      for (const mode of (m[1] as string).split(";")) {
        if (!(mode in RESETTABLE)) continue;
        if (m[2] === "h") this.on.add(mode);
        else this.on.delete(mode);
      }
    }
    this.kittyDepth += (text.match(KITTY_PUSH)?.length ?? 0) - (text.match(KITTY_POP)?.length ?? 0);
    if (this.kittyDepth < 0) this.kittyDepth = 0;
  }

  /** Forgets everything (a full screen repaint follows). */
  reset(): void {
    this.on.clear();
    this.kittyDepth = 0;
  }

  /** The sequence that returns the terminal to its normal state. */
  restoreSequence(): string {
    let out = "";
    for (const mode of this.on) out += RESETTABLE[mode] ?? "";
    if (this.kittyDepth > 0) out += "\x1b[<u".repeat(this.kittyDepth);
    return `${out}\x1b[0m\x1b[?25h`;
  }
}
