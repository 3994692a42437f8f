/**
 * Chat mode's reading of the terminal: the screen model xterm.js keeps (scrollback and screen,
 * after every redraw has landed), not the raw bytes — so a program that redraws its lines, as
 * Claude Code does, gives one bubble, not one per redraw.
 *
 * Each message the user sent is found again where the program echoed it (Claude Code's `❯ text`,
 * a shell's `$ text`), searching forward from the previous one; the program's text between two
 * messages is its reply. A message the program did not echo falls back to the line the cursor was
 * on when it was sent. The program's own input area at the bottom (Claude Code's ruled box and the
 * hints under it) is not part of the conversation. Lines are cleaned of what only draws: box
 * drawing, block elements, spinners and progress bars.
 */

/** What chat mode reads of xterm.js's `Terminal`: its active buffer. */
export interface Terminal {
  buffer: {
    active: {
      length: number;
      baseY: number;
      cursorY: number;
      getLine(y: number): { translateToString(trimRight?: boolean): string; isWrapped: boolean } | undefined;
    };
  };
}

export interface ScreenLine {
  text: string;
  /** The line continues the one before it (a long line wrapped). */
  wrapped: boolean;
}

/** A message the user sent, and the buffer line the cursor was on when they sent it. */
export interface Sent {
  text: string;
  line: number;
}

export interface Bubble {
  from: "you" | "program";
  text: string;
}

/** Characters that only draw: box drawing, block elements, braille spinners, Claude Code's spinner stars. */
const DECORATION = /[\u2500-\u259F\u2800-\u28FF\u25A0-\u25FF✻✶✳✢✽·⏺⎿]/g;

function cleanLine(line: string): string {
  return line.replace(DECORATION, " ").replace(/\s+$/, "");
}

/** The buffer as lines, and where the screen (below the scrollback) starts. */
export function screenLines(term: Terminal): { lines: ScreenLine[]; screenTop: number } {
  const b = term.buffer.active;
  const lines: ScreenLine[] = [];
  for (let i = 0; i < b.length; i++) {
    const line = b.getLine(i);
    lines.push({ text: line?.translateToString(true) ?? "", wrapped: line?.isWrapped ?? false });
  }
  return { lines, screenTop: b.baseY };
}

/** The absolute buffer line the cursor is on (where the next output goes). */
export function cursorLine(term: Terminal): number {
  const b = term.buffer.active;
  return b.baseY + b.cursorY;
}

/** A horizontal rule across the screen (or a box's top edge): at least 10 rule characters and nothing else. */
const isRule = (text: string): boolean => /^\s*[╭┌]?[─━═]{10,}[╮┐]?\s*$/.test(text);

/**
 * Where the program's own input area starts: the upper of the last two rules on the screen when
 * they are close (Claude Code's input box between two rules, its hints below), or a last rule
 * near the bottom; the end of the buffer when there is none.
 */
export function inputAreaStart(lines: ScreenLine[], screenTop: number): number {
  const rules: number[] = [];
  for (let i = Math.max(0, screenTop); i < lines.length; i++) if (isRule(lines[i]?.text ?? "")) rules.push(i);
  const last = rules.at(-1);
  const before = rules.at(-2);
  if (last !== undefined && before !== undefined && last - before <= 10) return before;
  if (last !== undefined && lines.length - last <= 6) return last;
  return lines.length;
}

/** The first line after `line` that does not continue it. */
function nextLogical(lines: ScreenLine[], line: number): number {
  let i = line + 1;
  while (i < lines.length && lines[i]?.wrapped) i++;
  return i;
}

/**
 * The cleaned text of lines [from, to): wrapped lines joined, blank runs collapsed, progress bars
 * dropped.
 */
export function textOf(lines: ScreenLine[], from: number, to: number): string {
  const out: string[] = [];
  for (let i = Math.max(0, from); i < Math.min(to, lines.length); i++) {
    const line = lines[i] as ScreenLine;
    const text = cleanLine(line.text);
    // A line of a progress bar or a spinner alone says nothing.
    if (/^\s*\d{1,3}%\s*$/.test(text)) continue;
    if (line.wrapped && out.length > 0) out[out.length - 1] += text;
    else out.push(text);
  }
  // The indentation every line shares (Claude Code's margin, a marker's column) goes.
  const indent = Math.min(...out.filter((l) => l.trim() !== "").map((l) => /^\s*/.exec(l)?.[0].length ?? 0));
  const dedented = Number.isFinite(indent) ? out.map((l) => l.slice(indent)) : out;
  return dedented.join("\n").replace(/\n{3,}/g, "\n\n").replace(/^\n+|\s+$/g, "");
}

/** The line (at or after `from`, before `to`) where the program echoed `text`, or null. */
function echoOf(lines: ScreenLine[], text: string, from: number, to: number): number | null {
  const want = text.trim();
  if (!want) return null;
  for (let i = Math.max(0, from); i < to; ) {
    const next = nextLogical(lines, i);
    if (textOf(lines, i, next).endsWith(want)) return i;
    i = next;
  }
  return null;
}

/** The conversation on the screen: the program's text, and each sent message where it was echoed. */
export function chatBubbles(lines: ScreenLine[], screenTop: number, sent: Sent[]): Bubble[] {
  const end = inputAreaStart(lines, screenTop);
  const bubbles: Bubble[] = [];
  const program = (from: number, to: number): void => {
    const text = textOf(lines, from, to);
    if (text) bubbles.push({ from: "program", text });
  };
  let pos = 0;
  for (const m of sent) {
    const at = echoOf(lines, m.text, pos, end) ?? (m.line >= pos && m.line < end ? m.line : null);
    if (at === null) {
      // Not on the screen yet (the program has not taken it): it goes last.
      program(pos, end);
      pos = end;
      bubbles.push({ from: "you", text: m.text });
      continue;
    }
    program(pos, at);
    bubbles.push({ from: "you", text: m.text });
    pos = nextLogical(lines, at);
  }
  program(pos, end);
  return bubbles;
}
