/**
 * Full raw mode for the user's terminal while attached, as ssh and tmux set it (cfmakeraw).
 *
 * Node's and Bun's `setRawMode(true)` (libuv) leave output processing on (`opost onlcr`), so every
 * LF the remote program writes would become CR LF here; a program that turns `onlcr` off and moves
 * the cursor down with a bare LF (ncurses does) would draw in the wrong column. So on top of
 * `setRawMode` the settings are saved with `stty -g` and the terminal is put in raw mode with
 * `stty` on the same file descriptor, and `restore()` puts back exactly the saved settings. `stty`
 * is on every Linux and macOS system; where it fails, libuv's raw mode is what remains.
 */
import type { Log } from "../lib/log.ts";

export interface RawMode {
  /** Puts the terminal back as it was; safe to call more than once, and from an exit handler. */
  restore(): void;
}

/** cfmakeraw's settings: no input or output processing, no echo, no signals, 8-bit characters. */
const RAW = ["raw", "-echo", "-echonl", "-iexten", "cs8", "-parenb"];

export function enterRawMode(stdin: NodeJS.ReadStream, log: Log): RawMode {
  const fd = (stdin as { fd?: number }).fd ?? 0;
  const saved = stty(fd, ["-g"])?.trim() || null;
  stdin.setRawMode(true);
  if (!saved) log.warn("could not read the terminal's settings with stty; output post-processing stays on");
  else if (stty(fd, RAW) === null) log.warn("stty raw failed; output post-processing stays on");
  let restored = false;
  return {
    restore() {
      if (restored) return;
      restored = true;
      try {
        if (stdin.isTTY) stdin.setRawMode(false);
      } catch {
        // the terminal may already be gone (hang-up)
      }
      if (saved) stty(fd, [saved]);
    },
  };
}

/** Runs stty on `fd`; its output, or null when it failed (no stty, not a terminal, hung up). */
function stty(fd: number, args: string[]): string | null {
  try {
    const res = Bun.spawnSync(["stty", ...args], { stdin: fd as never, stdout: "pipe", stderr: "pipe" });
    return res.exitCode === 0 ? res.stdout.toString() : null;
  } catch {
    return null;
  }
}
