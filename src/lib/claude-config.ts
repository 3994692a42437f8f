/**
 * Claude Code's own config for a session (`.claude.json`): its first-run onboarding done, and the
 * session's workspace trusted, so Claude Code opens straight to its prompt. Written where the
 * session's Claude Code reads it: the sandbox's private HOME (local sandbox; the session image
 * has its own), or, for an unsandboxed session, a config dir of the session's own
 * (`CLAUDE_CONFIG_DIR`), never the host user's `~/.claude.json`.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function claudeConfig(workspace: string): string {
  return `${JSON.stringify({ hasCompletedOnboarding: true, projects: { [workspace]: { hasTrustDialogAccepted: true } } }, null, 2)}\n`;
}

/** Writes `<dir>/.claude.json` unless Claude Code already keeps one there; true when written. */
export function seedClaudeConfig(dir: string, workspace: string, mode = 0o600): boolean {
  const file = join(dir, ".claude.json");
  if (existsSync(file)) return false;
  writeFileSync(file, claudeConfig(workspace), { mode, flag: "wx" });
  return true;
}
