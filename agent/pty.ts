/**
 * The program under a real PTY (`Bun.spawn` with `terminal`). `PtyRunner` is the seam the agent
 * uses, so the agent can be exercised with any program.
 */
export interface PtyProcess {
  readonly pid: number;
  write(data: Uint8Array | string): void;
  resize(cols: number, rows: number): void;
  /** Signals the program's process group. */
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code once the program exited and its output is drained. */
  readonly exited: Promise<number>;
}

export interface PtySpec {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  cols: number;
  rows: number;
  onData(data: Uint8Array): void;
}

export type PtyRunner = (spec: PtySpec) => PtyProcess;

/** How long to keep reading after the program exited, for output still in the PTY buffer. */
const DRAIN_MS = 300;

export const bunPty: PtyRunner = (spec) => {
  let eof: () => void = () => {};
  const drained = new Promise<void>((resolve) => (eof = resolve));
  const proc = Bun.spawn(spec.argv, {
    cwd: spec.cwd,
    env: spec.env,
    terminal: {
      cols: spec.cols,
      rows: spec.rows,
      name: "xterm-256color",
      data: (_term, data) => spec.onData(data),
      exit: () => eof(),
    },
  });
  const terminal = proc.terminal as Bun.Terminal;
  const exited = proc.exited.then(async (code) => {
    await Promise.race([drained, Bun.sleep(DRAIN_MS)]);
    terminal.close();
    // A program killed by a signal reports 128 + its number, as shells do.
    const signal = proc.signalCode;
    if (signal === null || signal === undefined) return code ?? 0;
    return 128 + (typeof signal === "number" ? signal : (signalNumber(signal) ?? 1));
  });
  return {
    pid: proc.pid,
    write: (data) => {
      if (!terminal.closed) terminal.write(data);
    },
    resize: (cols, rows) => {
      if (!terminal.closed) terminal.resize(cols, rows);
    },
    kill: (signal) => {
      try {
        process.kill(-proc.pid, signal);
      } catch {
        try {
          proc.kill(signal);
        } catch {
          // already gone
        }
      }
    },
    exited,
  };
};

function signalNumber(name: string): number | undefined {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return table[name];
}
