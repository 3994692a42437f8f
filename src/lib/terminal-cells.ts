/**
 * Cells of an xterm buffer as other code reads them: the SGR that selects a cell's attributes
 * (the CLI redraws a row with it, `src/client/local-screen.ts`), and the screen as the prediction
 * engine reads it (`predict.ts`) — the same for the CLI's headless terminal and the dashboard's
 * xterm.js, whose buffers share this API.
 */
import type { IBufferCell, Terminal as HeadlessTerminal } from "@xterm/headless";
import type { ScreenCell, ScreenView } from "./predict.ts";

/** What both xterm builds offer that is read here. */
type XtermLike = Pick<HeadlessTerminal, "cols" | "rows" | "buffer">;

/** The SGR parameters that select a cell's attributes from a reset pen ("0;…"). */
export function cellSgr(c: IBufferCell): string {
  let sgr = "0";
  if (c.isBold()) sgr += ";1";
  if (c.isDim()) sgr += ";2";
  if (c.isItalic()) sgr += ";3";
  if (c.isUnderline()) sgr += ";4";
  if (c.isBlink()) sgr += ";5";
  if (c.isInverse()) sgr += ";7";
  if (c.isInvisible()) sgr += ";8";
  if (c.isStrikethrough()) sgr += ";9";
  if (c.isOverline()) sgr += ";53";
  sgr += color(c.isFgRGB(), c.isFgPalette(), c.getFgColor(), 30, 90, 38);
  sgr += color(c.isBgRGB(), c.isBgPalette(), c.getBgColor(), 40, 100, 48);
  return sgr;
}

function color(rgb: boolean, palette: boolean, value: number, base: number, bright: number, extended: number): string {
  if (rgb) return `;${extended};2;${(value >> 16) & 0xff};${(value >> 8) & 0xff};${value & 0xff}`;
  if (!palette) return "";
  if (value < 8) return `;${base + value}`;
  if (value < 16) return `;${bright + value - 8}`;
  return `;${extended};5;${value}`;
}

/** The screen of an xterm terminal, as it stands when called. */
export function xtermScreen(term: XtermLike): ScreenView {
  const buffer = term.buffer.active;
  const scratch = buffer.getNullCell();
  // xterm counts widths with its unicode service; its public API does not offer it.
  const unicode = (term as unknown as { _core?: { unicodeService?: { getStringCellWidth(s: string): number } } })._core?.unicodeService;
  return {
    cols: term.cols,
    rows: term.rows,
    cursorX: buffer.cursorX,
    cursorY: buffer.cursorY,
    alternate: buffer.type === "alternate",
    cell(x: number, y: number): ScreenCell {
      const c = buffer.getLine(buffer.baseY + y)?.getCell(x, scratch);
      if (!c) return { chars: "", width: 1, sgr: "0" };
      return { chars: c.getChars(), width: c.getWidth(), sgr: cellSgr(c) };
    },
    width(char: string): number {
      if (unicode) return unicode.getStringCellWidth(char);
      const cp = char.codePointAt(0) ?? 0;
      return cp < 0x20 ? 0 : 1;
    },
  };
}
