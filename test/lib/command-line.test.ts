/**
 * No silent misconfiguration: both binaries refuse an unknown flag or subcommand with exit code 2
 * and the nearest valid name, and the server warns about `CATTY_*` variables no binary reads.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { CLI_SETTINGS } from "../../src/client/config.ts";
import { nearest } from "../../src/lib/nearest.ts";
import { knownVariables, unknownVariableWarnings } from "../../server/environment-check.ts";
import { tempDirs } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";

const tempDir = tempDirs("catty-flags-");

const CLI = join(import.meta.dir, "../../src/cli.ts");
const SERVER = join(import.meta.dir, "../../server/main.ts");

const run = (file: string, args: string[], env: Record<string, string> = {}): { err: string; code: number } => {
  const p = Bun.spawnSync([process.execPath, file, ...args], { env: { ...process.env, CATTY_NO_UPDATE_CHECK: "1", ...env }, stdout: "pipe", stderr: "pipe" });
  return { err: Bun.stripANSI(p.stderr.toString()), code: p.exitCode };
};

test("nearest names a close match and nothing for a word far from every name", () => {
  expect(nearest("s3-buckt", ["s3-bucket", "s3-prefix", "port"])).toBe("s3-bucket");
  expect(nearest("jsn", ["json", "api"])).toBe("json");
  expect(nearest("lst", ["list", "login", "new"])).toBe("list");
  expect(nearest("completely-different", ["json", "api"])).toBeNull();
});

test("catty: an unknown flag or command exits 2 naming the nearest", () => {
  const flag = run(CLI, ["list", "--jsn"]);
  expect(flag.code).toBe(2);
  expect(flag.err).toContain("--jsn");
  expect(flag.err).toContain("did you mean --json?");
  const command = run(CLI, ["lst"]);
  expect(command.code).toBe(2);
  expect(command.err).toContain("did you mean `catty list`?");
  // A flag before the command (`--api` is hoisted) and words after `--` are not mistaken for typos.
  expect(run(CLI, ["version", "--versoin"]).code).toBe(2);
  expect(run(CLI, ["list", "--help"]).code).toBe(0);
});

test("catty-server: an unknown flag or subcommand exits 2 naming the nearest; the right one starts", () => {
  const dataDir = tempDir();
  const flag = run(SERVER, ["--s3-buckt", "mybucket", "--data-dir", dataDir]);
  expect(flag.code).toBe(2);
  expect(flag.err).toContain("unknown flag --s3-buckt");
  expect(flag.err).toContain("did you mean --s3-bucket?");
  const sub = run(SERVER, ["tokn", "create"]);
  expect(sub.code).toBe(2);
  expect(sub.err).toContain("did you mean `catty-server token`?");
  const deeper = run(SERVER, ["token", "lst", "--data-dir", dataDir]);
  expect(deeper.code).toBe(2);
  expect(deeper.err).toContain("did you mean `catty-server token list`?");
  expect(run(SERVER, ["token", "list", "--data-dir", dataDir]).code).toBe(0);
});

test("an unknown CATTY_ variable is warned about with the nearest setting; the CLI's and agents' are known", () => {
  const warnings = unknownVariableWarnings({ CATTY_S3_BUCKT: "x", CATTY_S3_BUCKET: "y", CATTY_TOKEN: "t", CATTY_RING_BYTES: "1", PATH: "/bin" });
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toContain("CATTY_S3_BUCKT");
  expect(warnings[0]).toContain("did you mean CATTY_S3_BUCKET?");
  const cli = Object.values(CLI_SETTINGS).flatMap((s) => s.info.env ?? []);
  for (const name of [...cli, "CATTY_SERVER_URL", "CATTY_SAVE_INTERVAL_MS", "CATTY_DATA_DIR"]) expect(knownVariables().has(name)).toBe(true);
});

test("every CATTY_ variable the code reads is known, so none is warned about wrongly", async () => {
  const root = join(import.meta.dir, "../..");
  const found = new Set<string>();
  for (const dir of ["src", "server", "agent"]) {
    for await (const file of new Bun.Glob(`${dir}/**/*.ts`).scan({ cwd: root })) {
      const text = await Bun.file(join(root, file)).text();
      for (const m of text.matchAll(/env\.(CATTY_[A-Z0-9_]+)|"(CATTY_[A-Z0-9_]+)"/g)) found.add((m[1] ?? m[2]) as string);
    }
  }
  const known = knownVariables();
  expect([...found].filter((name) => !known.has(name))).toEqual([]);
});

test("a starting server warns about a mistyped CATTY_ variable and logs one line of the settings that shape it", async () => {
  const dataDir = tempDir();
  const proc = Bun.spawn([process.execPath, SERVER, "--port", "0", "--data-dir", dataDir, "--sandbox", "none"], {
    env: { ...process.env, CATTY_S3_BUCKT: "mybucket", CATTY_LOG_LEVEL: "info" },
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  const read = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
    for await (const chunk of stream) out += new TextDecoder().decode(chunk);
  };
  void read(proc.stdout);
  void read(proc.stderr);
  try {
    await waitFor(() => out.includes("settings:"), { timeoutMs: 20_000, what: "the start line" });
    expect(out).toContain("CATTY_S3_BUCKT is not a Catty setting");
    expect(out).toContain("did you mean CATTY_S3_BUCKET?");
    const line = out.split("\n").find((l) => l.includes("settings:")) as string;
    for (const part of [`storage disk (${dataDir})`, "database SQLite", "provider local", "sandbox none", "session egress ", "public URL http://127.0.0.1:", "TLS none"]) expect(line).toContain(part);
  } finally {
    proc.kill();
    await proc.exited;
  }
});
