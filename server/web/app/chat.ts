/**
 * Chat mode's reading of the terminal: the screen model xterm.js keeps (scrollback and screen,
 * after every redraw has landed), not the raw bytes — so a program that redraws its lines, as
 * Claude Code does, gives one bubble, not one per redraw. A reply is the text of the lines from
 * where the cursor was when the user sent their message to the end, cleaned of what only draws:
 * box drawing, block elements, spinners and progress bars.
 */
import type { Terminal } from "@xterm/xterm";

/** Characters that only draw: box drawing, block elements, braille spinners, Claude Code's spinner stars. */
const DECORATION = /[\u2500-\u259F\u2800-\u28FF\u25A0-\u25FF✻✶✳✢✽·⏺⎿]/g;

export function cleanLine(line: string): string {
  return line.replace(DECORATION, " ").replace(/\s+$/, "").replace(/^\s{2,}/, (m) => (m.length > 8 ? " " : m));
}

/** The absolute buffer line the cursor is on (where the next output goes). */
export function cursorLine(term: Terminal): number {
  const b = term.buffer.active;
  return b.baseY + b.cursorY;
}

/** The first line after `line` that does not continue it (a long line wraps onto the next ones). */
export function afterLine(term: Terminal, line: number): number {
  const b = term.buffer.active;
  let i = line + 1;
  while (i < b.length && b.getLine(i)?.isWrapped) i++;
  return i;
}

/**
 * The cleaned text of buffer lines [from, to) (to the end by default): wrapped lines joined, blank
 * runs collapsed, progress bars dropped.
 */
export function textFrom(term: Terminal, from: number, to?: number): string {
  const b = term.buffer.active;
  const lines: string[] = [];
  for (let i = Math.max(0, from); i < Math.min(to ?? b.length, b.length); i++) {
    const line = b.getLine(i);
    if (!line) continue;
    const text = cleanLine(line.translateToString(true));
    // A line of a progress bar or a spinner alone says nothing.
    if (/^\s*\d{1,3}%\s*$/.test(text)) continue;
    if (line.isWrapped && lines.length > 0) lines[lines.length - 1] += text;
    else lines.push(text);
  }
  return lines.join("\n").replace(/\n{3,}/g, "\n\n").trim();
}
