/**
 * The layout's import rule (docs/architecture.md §1): server/ and agent/ import only src/protocol and src/lib,
 * never each other; nothing outside the CLI imports src/client, src/commands or src/tui;
 * src/protocol imports nothing of ours but itself; and src/lib holds only what two or more
 * binaries use.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const ENTRIES = { catty: "src/cli.ts", "catty-server": "server/main.ts", "catty-agent": "agent/main.ts" } as const;
/** Code a binary carries that its imports do not reach: the dashboard, bundled for the browser (server/web/assets.ts). */
const BUNDLED: Partial<Record<keyof typeof ENTRIES, string[]>> = { "catty-server": ["server/web/app/main.tsx"] };

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
    const reached = (entries: string[]): Set<string> => {
      const seen = new Set<string>();
      const visit = (file: string): void => {
        if (seen.has(file)) return;
        seen.add(file);
        for (const next of importsOf(file)) visit(next);
      };
      for (const entry of entries) visit(entry);
      return seen;
    };
    const graphs = Object.entries(ENTRIES).map(([bin, entry]) => reached([entry, ...(BUNDLED[bin as keyof typeof ENTRIES] ?? [])]));
    const lonely = sources("src/lib").filter((file) => graphs.filter((g) => g.has(file)).length < 2);
    expect(lonely).toEqual([]);
  });
});

/**
 * The agent never touches the workspace with more rights than the program (docs/architecture.md §3): it reads
 * it through `src/lib/tree.ts` (descriptors, never a symlink followed) and writes into it through
 * the program's own sandbox (agent/files.ts). Every module the agent binary reaches that opens
 * files by path — a `node:fs` function that takes a path, or `Bun.file`/`Bun.write` — must be
 * listed here with the reason it is not a workspace reader; a new one fails this test until it
 * goes through the tree or says why it need not.
 */
const PATH_FS_ALLOWED: Record<string, string> = {
  "src/lib/tree.ts": "the one module that reaches the workspace: one component at a time from an opened directory",
  "agent/main.ts": "creates the agent's own state dir (outside the workspace)",
  "agent/agent.ts": "creates the state dir and the unsandboxed session's Claude config dir beside the workspace; chowns the workspace root, its own path",
  "agent/attention.ts": "reads /proc/<pid>/stat and wchan of the program's processes",
  "agent/ports.ts": "reads /proc: the program's processes' stat, comm, fd links and net/tcp{,6} tables",
  "agent/netns.ts": "the network bridge's Unix sockets in the agent's own state dir, outside the workspace",
  "agent/egress.ts": "reads the container's /etc/resolv.conf for the egress rules' DNS servers",
  "agent/restore.ts": "the downloaded archive in the agent's state dir; extraction runs before the program exists, into the new, empty workspace",
  "src/lib/archive.ts": "extraction (the restore, before the program exists) and the CLI's packing of the user's own files",
  "src/lib/safe-fs.ts": "the path rules and atomic writes for the CLI's trees (sync, sync-back, downloads); the agent uses only its path checks",
  "src/lib/exclude.ts": "reads .gitignore only for uploads (the CLI, from the user's own project); a snapshot's rules are fixed",
  "src/lib/claude-config.ts": "seeds Claude Code's config in the session's HOME or config dir, made by the provider or the agent, before the program starts",
  "src/lib/log.ts": "the log file the binary was told to write",
  "src/lib/account.ts": "reads /etc/passwd and checks the login shell is executable",
};

/** The fs functions that act on a descriptor or a constant, never on a name. */
const FD_ONLY = new Set(["closeSync", "readSync", "fstatSync", "writeSync", "fchmodSync", "fsyncSync", "ftruncateSync", "constants", "close", "read", "fstat"]);

/** Names a file takes from node:fs that reach files by path (type-only imports excepted). */
function pathFsUse(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const used: string[] = [];
  for (const m of text.matchAll(/import\s+(type\s+)?(\{[^}]*\}|\*\s+as\s+\w+|\w+)\s+from\s+"(?:node:)?fs(?:\/promises)?"/g)) {
    if (m[1]) continue;
    const clause = m[2] as string;
    if (!clause.startsWith("{")) {
      used.push(clause);
      continue;
    }
    for (const part of clause.slice(1, -1).split(",").map((p) => p.trim()).filter(Boolean)) {
      if (part.startsWith("type ")) continue;
      const name = part.split(/\s+as\s+/)[0] as string;
      if (!FD_ONLY.has(name)) used.push(name);
    }
  }
  for (const m of text.matchAll(/Bun\.(file|write)\(/g)) used.push(`Bun.${m[1]}`);
  return used;
}

describe("the agent and the workspace", () => {
  const reached = new Set<string>();
  const visit = (file: string): void => {
    if (reached.has(file)) return;
    reached.add(file);
    for (const next of importsOf(file)) visit(next);
  };
  visit(ENTRIES["catty-agent"]);

  test("every module the agent reaches that opens files by path says why it is not a workspace reader", () => {
    const unexplained = [...reached].sort().flatMap((file) => {
      const used = pathFsUse(file);
      return used.length > 0 && !(file in PATH_FS_ALLOWED) ? [`${file}: ${used.join(", ")}`] : [];
    });
    expect(unexplained).toEqual([]);
  });

  test("the workspace's readers take a tree, and open nothing by path", () => {
    for (const file of ["agent/watch.ts", "agent/sync-sender.ts", "agent/saver.ts", "src/lib/snapshot/build.ts"]) {
      expect(reached.has(file)).toBe(true);
      expect({ file, used: pathFsUse(file) }).toEqual({ file, used: [] });
    }
  });

  test("the list of exceptions holds no module that no longer needs one", () => {
    const stale = Object.keys(PATH_FS_ALLOWED).filter((file) => !reached.has(file) || pathFsUse(file).length === 0);
    expect(stale).toEqual([]);
  });
});

describe("docs/architecture.md", () => {
  test("every section the code cites is there", () => {
    const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
    const sections = new Set([...doc.matchAll(/^## (\d+)\. /gm)].map((m) => m[1]));
    const cited = ["src", "server", "agent", "test"].flatMap(sources).flatMap((file) =>
      [...readFileSync(join(ROOT, file), "utf8").matchAll(/docs\/architecture\.md §(\d+)/g)].map((m) => ({ file, section: m[1] })),
    );
    expect(cited.length).toBeGreaterThan(0);
    expect(cited.filter((c) => !sections.has(c.section))).toEqual([]);
  });
});
