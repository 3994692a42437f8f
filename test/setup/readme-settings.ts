/**
 * The README's settings tables, generated from the settings each binary declares (so they cannot
 * drift from the code). `bun test/setup/readme-settings.ts --write` rewrites them in README.md;
 * test/readme.test.ts fails when README.md is not what this would write.
 *
 * A table sits between `<!-- settings:NAME -->` and `<!-- /settings:NAME -->`.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AGENT_TUNING } from "../../src/protocol/agent-env.ts";
import { settingsTable, type SettingsSpec } from "../../src/protocol/settings.ts";
import { CLI_SETTINGS } from "../../src/client/config.ts";
import { SERVER_SETTINGS } from "../../server/config.ts";

export const README = join(import.meta.dir, "../../README.md");

const TABLES: Record<string, SettingsSpec> = {
  server: SERVER_SETTINGS,
  cli: CLI_SETTINGS,
  agent: AGENT_TUNING,
};

/** README text with every settings table regenerated. Throws when a marker is missing. */
export function renderReadme(text: string): string {
  let out = text;
  for (const [name, spec] of Object.entries(TABLES)) {
    const open = `<!-- settings:${name} -->`;
    const close = `<!-- /settings:${name} -->`;
    const start = out.indexOf(open);
    const end = out.indexOf(close);
    if (start < 0 || end < start) throw new Error(`README.md has no ${open} … ${close} section.`);
    out = `${out.slice(0, start + open.length)}\n${settingsTable(spec)}\n${out.slice(end)}`;
  }
  return out;
}

if (import.meta.main) {
  const before = readFileSync(README, "utf8");
  const after = renderReadme(before);
  if (process.argv.includes("--write")) {
    writeFileSync(README, after);
    console.log(after === before ? "README.md settings tables are up to date." : "README.md settings tables rewritten.");
  } else if (after !== before) {
    console.error("README.md settings tables are out of date: run `bun test/setup/readme-settings.ts --write`.");
    process.exit(1);
  }
}
