/**
 * A real terminal for end-to-end tests: a tmux server on its own socket, driven with send-keys
 * and read with capture-pane.
 */
import { waitFor } from "./wait.ts";

export class Tmux {
  private readonly socket = `catty-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  readonly target = "t";

  constructor(private readonly env: Record<string, string>) {}

  private run(args: string[]): string {
    const res = Bun.spawnSync(["tmux", "-L", this.socket, ...args], { env: { ...process.env, ...this.env } });
    if (res.exitCode !== 0) throw new Error(`tmux ${args.join(" ")} failed: ${res.stderr.toString()}`);
    return res.stdout.toString();
  }

  start(opts: { cols?: number; rows?: number; cwd?: string } = {}): this {
    const env = Object.entries(this.env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
    this.run([
      "-f", "/dev/null", "new-session", "-d", "-s", this.target,
      "-x", String(opts.cols ?? 100), "-y", String(opts.rows ?? 30),
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

  /** Pastes `text` as a terminal pastes (and drops files): bracketed when the program asked for it. */
  paste(text: string): void {
    this.run(["set-buffer", "-b", "catty-paste", "--", text]);
    this.run(["paste-buffer", "-p", "-d", "-b", "catty-paste", "-t", this.target]);
  }

  keys(...keys: string[]): void {
    this.run(["send-keys", "-t", this.target, ...keys]);
  }

  capture(): string {
    return this.run(["capture-pane", "-p", "-t", this.target]);
  }

  /** The screen with its attributes as SGR sequences (underlined cells show as `\x1b[4m`). */
  captureAttributes(): string {
    return this.run(["capture-pane", "-p", "-e", "-t", this.target]);
  }

  /** Screen text, then a line with the cursor position and the alternate-screen flag. */
  state(): string {
    const screen = this.capture();
    const info = this.run(["display-message", "-p", "-t", this.target, "cursor=#{cursor_x},#{cursor_y} alt=#{alternate_on}"]);
    return `${screen}--\n${info}`;
  }

  resize(cols: number, rows: number): void {
    this.run(["resize-window", "-t", this.target, "-x", String(cols), "-y", String(rows)]);
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
