/**
 * The command line's own behaviour around the commands: its help is plain text when it does not
 * go to a terminal (`catty --help | less`) or `NO_COLOR` is set, and every setting it reads
 * comes from its settings table (`CATTY_NO_UPDATE_CHECK` included).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { readCliConfig } from "../../src/client/config.ts";

const CLI = join(import.meta.dir, "../../src/cli.ts");

const help = (args: string[], env: Record<string, string> = {}): { out: string; code: number } => {
  const p = Bun.spawnSync([process.execPath, CLI, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { out: p.stdout.toString(), code: p.exitCode };
};

test("help into a pipe is plain text, for the main command and a subcommand", () => {
  for (const args of [["--help"], ["list", "--help"]]) {
    const { out, code } = help(args);
    expect(code).toBe(0);
    expect(out).toContain("USAGE");
    expect(out).not.toContain("\x1b[");
  }
});

test("CATTY_NO_UPDATE_CHECK is a setting like the others", () => {
  expect(readCliConfig({}, { HOME: "/tmp" }).updateCheck).toBe(true);
  expect(readCliConfig({}, { HOME: "/tmp", CATTY_NO_UPDATE_CHECK: "1" }).updateCheck).toBe(false);
  expect(() => readCliConfig({}, { HOME: "/tmp", CATTY_NO_UPDATE_CHECK: "maybe" })).toThrow("CATTY_NO_UPDATE_CHECK");
});
