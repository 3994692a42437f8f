/**
 * A tmux terminal whose whole visible state can be compared with another's: the text of the
 * screen, where the cursor is, and whether the alternate screen is on. Used to check that a
 * screen restored through Catty equals what a local terminal running the same program shows.
 * (Like `Tmux`, one tmux server per terminal on its own socket.)
 */
import { waitFor } from "./wait.ts";

export class TmuxScreen {
  private readonly socket = `catty-screen-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly target = "s";

  constructor(private readonly env: Record<string, string>) {}

  private run(args: string[]): string {
    const res = Bun.spawnSync(["tmux", "-L", this.socket, ...args], { env: { ...process.env, ...this.env } });
    if (res.exitCode !== 0) throw new Error(`tmux ${args.join(" ")} failed: ${res.stderr.toString()}`);
    return res.stdout.toString();
  }

  start(opts: { cols: number; rows: number; cwd?: string }): this {
    const env = Object.entries(this.env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
    this.run([
      "-f", "/dev/null", "new-session", "-d", "-s", this.target,
      "-x", String(opts.cols), "-y", String(opts.rows),
      ...(opts.cwd ? ["-c", opts.cwd] : []), ...env,
      "bash --norc --noprofile",
    ]);
    this.run(["set-option", "-g", "status", "off"]);
    this.run(["set-option", "-g", "window-size", "manual"]);
    return this;
  }

  /** Types literal text (no key names) and optionally Enter. */
  type(text: string, enter = true): void {
    this.run(["send-keys", "-t", this.target, "-l", text]);
    if (enter) this.run(["send-keys", "-t", this.target, "Enter"]);
  }

  keys(...keys: string[]): void {
    this.run(["send-keys", "-t", this.target, ...keys]);
  }

  capture(): string {
    return this.run(["capture-pane", "-p", "-t", this.target]);
  }

  /** Screen text, then a line with the cursor position and the alternate-screen flag. */
  state(): string {
    const screen = this.capture();
    const info = this.run(["display-message", "-p", "-t", this.target, "cursor=#{cursor_x},#{cursor_y} alt=#{alternate_on}"]);
    return `${screen}--\n${info}`;
  }

  async waitFor(pattern: string | RegExp, timeoutMs = 15_000): Promise<string> {
    let screen = "";
    try {
      return await waitFor(
        () => {
          screen = this.capture();
          return (typeof pattern === "string" ? screen.includes(pattern) : pattern.test(screen)) ? screen : null;
        },
        { timeoutMs, what: `${pattern} on screen` },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- screen ---\n${screen}\n--------------`);
    }
  }

  kill(): void {
    try {
      this.run(["kill-server"]);
    } catch {
      // already gone
    }
  }
}

/**
 * Waits until two terminals show the same state; on timeout, fails showing both (the last
 * states seen), so a difference is easy to read.
 */
export async function waitForSameScreen(a: TmuxScreen, b: TmuxScreen, timeoutMs = 15_000, what = "screens"): Promise<string> {
  let sa = "";
  let sb = "";
  try {
    return await waitFor(
      () => {
        sa = a.state();
        sb = b.state();
        return sa === sb ? sa : null;
      },
      { timeoutMs, what: `${what} to be equal` },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- through catty ---\n${sa}\n--- local ---\n${sb}\n---`);
  }
}
