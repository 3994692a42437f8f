/**
 * The layout's import rule (DESIGN §2): server/ and agent/ import only src/protocol and src/lib,
 * never each other; nothing outside the CLI imports src/client, src/commands or src/tui;
 * src/protocol imports nothing of ours but itself; and src/lib holds only what two or more
 * binaries use.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const ENTRIES = { catty: "src/cli.ts", "catty-server": "server/main.ts", "catty-agent": "agent/main.ts" } as const;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sources(rel));
    else if (/\.tsx?$/.test(name)) out.push(rel);
  }
  return out;
}

/** Our own modules a file imports (static, type-only and dynamic), as repository paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1] as string);
  return specs.filter((spec) => /\.tsx?$/.test(spec)).map((spec) => relative(ROOT, resolve(ROOT, dirname(file), spec)));
}

const ALL = ["src", "server", "agent"].flatMap(sources);
const area = (path: string): string => {
  for (const prefix of ["src/protocol", "src/lib", "src/client", "src/commands", "src/tui", "server", "agent"]) {
    if (path.startsWith(`${prefix}/`)) return prefix;
  }
  return path; // src/cli.ts
};

/** Which areas each area may import (besides itself). */
const ALLOWED: Record<string, string[]> = {
  "src/protocol": [],
  "src/lib": ["src/protocol"],
  server: ["src/protocol", "src/lib"],
  agent: ["src/protocol", "src/lib"],
  "src/client": ["src/protocol", "src/lib"],
  "src/tui": ["src/protocol", "src/lib", "src/client"],
  "src/commands": ["src/protocol", "src/lib", "src/client", "src/tui", "src/commands"],
  "src/cli.ts": ["src/protocol", "src/lib", "src/client", "src/commands"],
};

describe("import rule", () => {
  test("every module imports only what its area may", () => {
    const broken: string[] = [];
    for (const file of ALL) {
      const from = area(file);
      for (const target of importsOf(file)) {
        const to = area(target);
        if (to !== from && !(ALLOWED[from] ?? []).includes(to)) broken.push(`${file} imports ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  test("src/lib holds only modules that two or more binaries use", () => {
    const reached = (entry: string): Set<string> => {
      const seen = new Set<string>();
      const visit = (file: string): void => {
        if (seen.has(file)) return;
        seen.add(file);
        for (const next of importsOf(file)) visit(next);
      };
      visit(entry);
      return seen;
    };
    const graphs = Object.values(ENTRIES).map(reached);
    const lonely = sources("src/lib").filter((file) => graphs.filter((g) => g.has(file)).length < 2);
    expect(lonely).toEqual([]);
  });
});
