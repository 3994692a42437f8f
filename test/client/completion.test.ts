/** Shell completion generated from the command tree, run in a real bash. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const CLI = join(import.meta.dir, "..", "..", "src", "cli.ts");
const script = (shell: string): string => {
  const r = Bun.spawnSync([process.execPath, CLI, "completion", shell]);
  expect(r.exitCode).toBe(0);
  return r.stdout.toString();
};

/** What bash completes for the words typed so far (the last one being completed). */
function complete(words: string[]): string[] {
  const setup = `${script("bash")}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _catty; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = Bun.spawnSync(["bash", "-c", setup], { env: { ...process.env, PATH: "/usr/bin:/bin" } });
  return r.stdout.toString().split("\n").filter(Boolean);
}

describe("catty completion", () => {
  test("bash: commands, a command's flags with their --no- forms, subcommands", () => {
    expect(complete(["catty", "st"])).toEqual(["stop"]);
    expect(complete(["catty", "new", "--no-u"])).toEqual(["--no-upload"]);
    expect(complete(["catty", "new", "--det"])).toEqual(["--detach-keys"]);
    expect(complete(["catty", "secrets", "a"])).toEqual(["add"]);
    expect(complete(["catty", "stop", "--a"]).sort()).toEqual(["--all", "--api"]);
  });

  test("zsh and fish scripts name every command; an unknown shell is an error", () => {
    const zsh = script("zsh");
    const fish = script("fish");
    for (const cmd of ["new", "connect", "list", "stop", "download", "sync", "secrets", "usage"]) {
      expect(zsh).toContain(`'${cmd}:`);
      expect(fish).toContain(`-a ${cmd} -d`);
    }
    expect(fish).toContain("-l detach-keys");
    const bad = Bun.spawnSync([process.execPath, CLI, "completion", "tcsh"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.toString()).toContain("Use bash, zsh or fish");
  });
});
