import { claudeHookSettings } from "../../agent/attention.ts";
import { describe, expect, test } from "bun:test";
import { CLAUDE_NOTICE, resolveCommand } from "../../agent/agent.ts";

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
    const r = resolveCommand([], () => null, { SHELL: "/bin/zsh" });
    expect(r.argv).toEqual(["/bin/zsh", "-l"]);
    expect(r.notice).toBe(CLAUDE_NOTICE);
    expect(r.notice).toContain("npm install -g @anthropic-ai/claude-code");
    expect(r.notice?.trimEnd().split("\n")).toHaveLength(1);
  });
});
