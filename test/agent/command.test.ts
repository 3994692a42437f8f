import { claudeHookSettings } from "../../agent/attention.ts";
import { describe, expect, test } from "bun:test";
import { CLAUDE_NOTICE, resolveCommand } from "../../agent/agent.ts";
import { loginShell, passwdEntry } from "../../src/lib/account.ts";

describe("the program a session runs", () => {
  test("the requested command, as given", () => {
    expect(resolveCommand(["vim", "notes.md"], () => "/usr/bin/claude", {})).toEqual({ argv: ["vim", "notes.md"], notice: null });
  });

  test("Claude Code when it is installed", () => {
    // With the hooks that report when it waits for the user.
    expect(resolveCommand([], (n) => (n === "claude" ? "/opt/bin/claude" : null), {})).toEqual({
      argv: ["/opt/bin/claude", "--settings", claudeHookSettings()],
      notice: null,
    });
  });

  test("otherwise the login shell, with a notice saying how to install Claude Code", () => {
    const r = resolveCommand([], () => null, { SHELL: "/bin/zsh" }, (env) => env.SHELL as string);
    expect(r.argv).toEqual(["/bin/zsh", "-l"]);
    expect(r.notice).toBe(CLAUDE_NOTICE);
    expect(r.notice).toContain("npm install -g @anthropic-ai/claude-code");
    expect(r.notice?.trimEnd().split("\n")).toHaveLength(1);
  });
});

describe("the login shell", () => {
  const installed = (...paths: string[]) => (p: string) => paths.includes(p);
  const account = { name: "dev", uid: 1000, home: "/home/dev", shell: "/usr/bin/fish" };

  test("$SHELL when it names an installed shell", () => {
    expect(loginShell({ SHELL: "/bin/zsh" }, account, installed("/bin/zsh", "/usr/bin/fish"))).toBe("/bin/zsh");
  });

  test("without $SHELL (env -i, cron, a service): the account's shell from the system, not \"unknown\"", () => {
    expect(loginShell({}, account, installed("/usr/bin/fish", "/bin/bash"))).toBe("/usr/bin/fish");
    expect(loginShell({ SHELL: "unknown" }, account, installed("/usr/bin/fish"))).toBe("/usr/bin/fish");
    // This machine, whatever the environment: a shell that exists.
    expect(loginShell({})).toMatch(/^\/.+/);
  });

  test("never a shell that refuses logins, nor one that is not installed", () => {
    const service = { ...account, shell: "/usr/sbin/nologin" };
    expect(loginShell({ SHELL: "/bin/false" }, service, installed("/bin/false", "/usr/sbin/nologin", "/bin/bash"))).toBe("/bin/bash");
    expect(loginShell({ SHELL: "/opt/gone/zsh" }, null, installed("/bin/sh"))).toBe("/bin/sh");
  });

  test("passwd entries by uid", () => {
    const text = "root:x:0:0:root:/root:/bin/bash\nbroken\ndev:x:1000:1000:Dev,,,:/home/dev:/usr/bin/fish\n";
    expect(passwdEntry(text, 1000)).toEqual(account);
    expect(passwdEntry(text, 0)?.name).toBe("root");
    expect(passwdEntry(text, 42)).toBeNull();
  });
});
