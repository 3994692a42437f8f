/**
 * A real `catty-server` binary on a free loopback port with its own data dir, which tests can
 * kill -9 and start again on the same port and data.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { killAgents } from "./agents.ts";
import { freePort } from "./ports.ts";
import { waitFor } from "./wait.ts";
import { removeAfterRun } from "./fs.ts";

export class ServerProcess {
  readonly port: number;
  readonly url: string;
  readonly dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-server-")));
  private proc: Subprocess | null = null;
  private logs = "";

  private readonly host: string;

  /**
   * `env` is added to this process's environment; a variable given as undefined is left out.
   * `host`: another loopback address to bind (127.0.0.2: one a provider takes for reachable),
   * which agents are then told to dial (`CATTY_PUBLIC_URL`). `port`: one picked beforehand (its
   * URL may then be in `env`, as a replica's `CATTY_INTERNAL_URL`).
   */
  constructor(
    private readonly bin: string,
    private readonly env: Record<string, string | undefined> = {},
    opts: { host?: string; port?: number } = {},
  ) {
    this.port = opts.port ?? freePort();
    this.host = opts.host ?? "127.0.0.1";
    this.url = `http://${this.host}:${this.port}`;
    if (opts.host) this.env = { CATTY_PUBLIC_URL: this.url, ...env };
  }

  async start(): Promise<void> {
    const proc = Bun.spawn([this.bin, "serve", "--host", this.host, "--port", String(this.port), "--data-dir", this.dataDir], {
      stdout: "pipe",
      stderr: "pipe",
      // Sessions run unsandboxed unless a test asks (they use host paths such as /tmp); the
      // sandbox has tests of its own (test/e2e/sandbox.test.ts).
      env: Object.fromEntries(
        Object.entries({ ...process.env, CATTY_SANDBOX: process.env.TEST_SANDBOX ?? "none", ...this.env }).filter(([, v]) => v !== undefined),
      ),
    });
    this.proc = proc;
    void this.collect(proc.stderr as ReadableStream<Uint8Array>);
    await waitFor(
      async () => (await fetch(`${this.url}/healthz`).catch(() => null))?.ok,
      { timeoutMs: 15_000, what: `catty-server on ${this.url}` },
    );
  }

  private async collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      this.logs += dec.decode(value);
    }
  }

  get output(): string {
    return this.logs;
  }

  get ownerToken(): string {
    return readFileSync(join(this.dataDir, "owner-token"), "utf8").trim();
  }

  /** SIGTERM (a graceful stop); resolves with the exit code and how long the process took to exit. */
  async terminate(): Promise<{ code: number | null; ms: number }> {
    const proc = this.proc;
    if (!proc) return { code: null, ms: 0 };
    const started = performance.now();
    proc.kill("SIGTERM");
    const code = await proc.exited;
    this.proc = null;
    return { code, ms: performance.now() - started };
  }

  async kill9(): Promise<void> {
    this.proc?.kill("SIGKILL");
    await this.proc?.exited;
    this.proc = null;
  }

  /** Stops the server and ends every session agent it started. */
  async stop(): Promise<void> {
    if (this.proc) {
      this.proc.kill("SIGTERM");
      await this.proc.exited;
      this.proc = null;
    }
    killAgents(this.dataDir);
  }
}
