/**
 * Full raw mode on a real PTY: a child process (`bun -e`) enters raw mode on its terminal and
 * restores it, printing `stty -a` at each step.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT } from "../helpers/binaries.ts";
import { waitFor } from "../helpers/wait.ts";

const CHILD = `
import { enterRawMode } from ${JSON.stringify(join(ROOT, "src/client/raw-mode.ts"))};
import { silentLog } from ${JSON.stringify(join(ROOT, "src/lib/log.ts"))};
const stty = () => Bun.spawnSync(["stty", "-a"], { stdin: 0, stdout: "pipe" }).stdout.toString().replace(/\\s+/g, " ");
const before = stty();
const raw = enterRawMode(process.stdin, silentLog);
const during = stty();
raw.restore();
raw.restore();
const after = stty();
process.stdout.write(JSON.stringify({ before, during, after }) + "\\r\\n__DONE__\\r\\n");
process.exit(0);
`;

test("raw mode turns off output processing, echo, signals and canonical input, and restores them exactly", async () => {
  let out = "";
  const proc = Bun.spawn([process.execPath, "-e", CHILD], {
    terminal: { cols: 80, rows: 24, data: (_t, d) => void (out += new TextDecoder().decode(d)) },
  });
  await waitFor(() => out.includes("__DONE__"), { what: "the child's report" });
  await proc.exited;
  const { before, during, after } = JSON.parse(out.slice(out.indexOf("{"), out.lastIndexOf("}") + 1)) as Record<string, string>;
  const flags = (s: string | undefined): Set<string> => new Set((s ?? "").split(" "));
  const was = flags(before);
  const raw = flags(during);
  expect(was.has("opost") && was.has("onlcr") && was.has("echo") && was.has("icanon") && was.has("isig")).toBe(true);
  for (const off of ["-opost", "-echo", "-icanon", "-isig", "-iexten", "-icrnl", "-ixon", "-echonl"]) {
    expect(raw.has(off), `${off} while raw`).toBe(true);
  }
  expect(after).toBe(before as string);
});
