/**
 * Detach detection on the raw input stream: Ctrl+C twice within a second detaches. The first
 * Ctrl+C still goes to the program (so a single Ctrl+C works as always); Ctrl+C inside a bracketed
 * paste, or with another key in between, never counts. Ctrl+C is the byte 0x03, or the key as
 * terminals send it with the kitty keyboard protocol (`CSI 99;5u`) or xterm's modifyOtherKeys
 * (`CSI 27;5;99~`); key releases and lone modifier keys (kitty) are not "another key".
 *
 * Input arrives in reads cut anywhere, so escape sequences are parsed incrementally: a sequence
 * may start in one read and end in the next. Every byte is forwarded as it comes (holding bytes
 * back would delay the Escape key); only the detaching Ctrl+C is kept from the program — unless
 * part of it went out in an earlier read, in which case the rest follows so the program never
 * holds half a key. The parser keeps a few numbers, never a copy of the input.
 */
const CTRL_C = 0x03;
const ESC = 0x1b;
/** Escape sequences longer than this are not keys we look for; they end as ordinary input. */
const MAX_SEQUENCE = 32;
/** Kitty key codes of the modifier keys themselves (left shift … right meta, caps/num lock…). */
const KITTY_MODIFIER_MIN = 57441;
const KITTY_MODIFIER_MAX = 57452;
const KITTY_CTRL = 4;
const KITTY_CAPS_LOCK = 64;
const KITTY_NUM_LOCK = 128;

const GROUND = 0;
const ESCAPE = 1;
const CSI = 2;
/** After ESC O: one more byte ends the key (SS3: F1-F4, keypad and arrows in application mode). */
const SS3 = 3;

/** What an input event means for detaching. */
const OTHER = 0;
const CTRLC = 1;
/** Neither a Ctrl+C nor another key (a release, a modifier alone, focus in/out). */
const NEUTRAL = 2;
const PASTE_START = 3;
const PASTE_END = 4;
/** Not an event: an ESC cut the sequence short and a new one begins. */
const RESTART = -2;

export class DetachDetector {
  private lastCtrlC = -Infinity;
  private inPaste = false;
  private state = GROUND;
  /** Whether the sequence being read began in an earlier read. */
  private carried = false;
  private length = 0;
  private prefix = 0;
  /** CSI parameters: [param][sub-parameter], first three of each two. */
  private readonly p = [0, 0, 0, 0, 0, 0];
  private readonly has = [false, false, false, false, false, false];
  private param = 0;
  private sub = 0;
  private intermediate = false;

  constructor(
    private readonly windowMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Returns the bytes to forward, and whether the user asked to detach. */
  feed(chunk: Uint8Array): { forward: Uint8Array; detach: boolean } {
    this.carried = this.state !== GROUND;
    /** Where the key being read began in this chunk (meaningless while `carried`). */
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      let event = -1;
      switch (this.state) {
        case GROUND:
          start = i;
          if (b === ESC) {
            this.state = ESCAPE;
            this.length = 1;
          } else event = b === CTRL_C ? CTRLC : OTHER;
          break;
        case ESCAPE:
          if (b === 0x5b) {
            this.beginCsi();
          } else if (b === 0x4f) {
            this.state = SS3;
          } else if (this.carried && b !== ESC) {
            // A lone Escape key in the previous read, then a new key here: read it afresh.
            this.state = GROUND;
            this.carried = false;
            this.key(OTHER);
            i--;
            continue;
          } else if (b === ESC) {
            // Escape, then a new sequence.
            this.key(OTHER);
            this.carried = false;
            this.length = 1;
            start = i;
            continue;
          } else {
            // Alt+key: ESC and the key in one read.
            this.state = GROUND;
            event = OTHER;
          }
          break;
        case SS3:
          this.state = GROUND;
          event = OTHER;
          break;
        case CSI:
          event = this.csi(b);
          if (event === RESTART) {
            // An ESC cut the sequence short: that was some other key, and a new one begins.
            this.key(OTHER);
            this.carried = false;
            this.length = 1;
            start = i;
            continue;
          }
          break;
      }
      if (event < 0) {
        if (this.state !== GROUND && ++this.length > MAX_SEQUENCE) {
          this.state = GROUND;
          event = OTHER;
        } else continue;
      }
      if (this.key(event)) return this.detach(chunk, i, start);
      if (this.state === GROUND) this.carried = false;
    }
    return { forward: chunk, detach: false };
  }

  /** The bytes to forward when the key ending at `end` detaches. */
  private detach(chunk: Uint8Array, end: number, start: number): { forward: Uint8Array; detach: boolean } {
    const upTo = this.carried ? end + 1 : start;
    this.state = GROUND;
    this.carried = false;
    return { forward: chunk.subarray(0, upTo), detach: true };
  }

  /** Applies one input event; true when it detaches. */
  private key(event: number): boolean {
    if (event === PASTE_START) {
      this.inPaste = true;
      this.lastCtrlC = -Infinity;
      return false;
    }
    if (event === PASTE_END) {
      this.inPaste = false;
      return false;
    }
    if (this.inPaste || event === NEUTRAL) return false;
    if (event !== CTRLC) {
      this.lastCtrlC = -Infinity;
      return false;
    }
    const t = this.now();
    if (t - this.lastCtrlC <= this.windowMs) {
      this.lastCtrlC = -Infinity;
      return true;
    }
    this.lastCtrlC = t;
    return false;
  }

  private beginCsi(): void {
    this.state = CSI;
    this.prefix = 0;
    this.param = 0;
    this.sub = 0;
    this.intermediate = false;
    for (let k = 0; k < 6; k++) {
      this.p[k] = 0;
      this.has[k] = false;
    }
  }

  /** One byte of a CSI: the event once its final byte is read, RESTART at an ESC, else -1. */
  private csi(b: number): number {
    if (b >= 0x30 && b <= 0x39) {
      if (this.param < 3 && this.sub < 2) {
        const k = this.param * 2 + this.sub;
        this.p[k] = Math.min((this.p[k] as number) * 10 + (b - 0x30), 1e7);
        this.has[k] = true;
      }
      return -1;
    }
    if (b === 0x3b) {
      this.param++;
      this.sub = 0;
      return -1;
    }
    if (b === 0x3a) {
      this.sub++;
      return -1;
    }
    if (b >= 0x3c && b <= 0x3f) {
      if (this.param === 0 && this.sub === 0 && !this.has[0] && this.prefix === 0) this.prefix = b;
      else this.intermediate = true;
      return -1;
    }
    if (b >= 0x20 && b <= 0x2f) {
      this.intermediate = true;
      return -1;
    }
    if (b === ESC) {
      this.state = ESCAPE;
      return RESTART;
    }
    if (b < 0x40 || b > 0x7e) return -1;
    this.state = GROUND;
    return this.meaning(b);
  }

  private meaning(final: number): number {
    if (this.prefix !== 0 || this.intermediate) return OTHER;
    const key = this.p[0] as number;
    const mods = this.p[2] as number;
    const event = this.p[3] as number;
    const third = this.p[4] as number;
    const params = this.param + 1;
    if (final === 0x7e) {
      // ~
      if (params === 1 && key === 200) return PASTE_START;
      if (params === 1 && key === 201) return PASTE_END;
      if (params === 3 && key === 27 && mods === 5 && third === 99) return CTRLC; // modifyOtherKeys
      return OTHER;
    }
    if (final === 0x75) {
      // u: kitty keyboard protocol, CSI key[:alternates] ; mods[:event] [; text] u
      if (this.has[3] && event === 3) return NEUTRAL; // a release
      if (key >= KITTY_MODIFIER_MIN && key <= KITTY_MODIFIER_MAX) return NEUTRAL;
      // Ctrl and nothing else, Caps Lock and Num Lock aside (mods is 1 + a bit set).
      const ctrlOnly = ((mods - 1) & ~(KITTY_CAPS_LOCK | KITTY_NUM_LOCK)) === KITTY_CTRL;
      if (key === 99 && ctrlOnly && (!this.has[3] || event === 1)) return CTRLC;
      return OTHER;
    }
    if ((final === 0x49 || final === 0x4f) && params === 1 && !this.has[0]) return NEUTRAL; // focus in/out
    return OTHER;
  }
}
