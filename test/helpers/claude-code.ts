/**
 * The real Claude Code CLI for the tests, from the npm registry (`@anthropic-ai/claude-code`, the
 * version the session image pins in image/versions.env), installed once into the image cache
 * (`~/.cache/catty/claude-code-<version>`) and kept there. Resolves to a directory holding a
 * `claude` executable (its native binary), to put first on a PATH.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { defaultCacheDir } from "../../image/build.ts";
import type { Tmux } from "./tmux.ts";
import { waitFor } from "./wait.ts";

export const CLAUDE_CODE_VERSION = /CLAUDE_CODE_VERSION=(\S+)/.exec(readFileSync(join(import.meta.dir, "../../image/versions.env"), "utf8"))?.[1] as string;

let installed: Promise<string> | null = null;

export function claudeCodeBinDir(): Promise<string> {
  installed ??= (async () => {
    const dir = join(defaultCacheDir(), `claude-code-${CLAUDE_CODE_VERSION}`);
    const native = join(dir, "node_modules", "@anthropic-ai", `claude-code-linux-${process.arch === "arm64" ? "arm64" : "x64"}`, "claude");
    if (!existsSync(native)) {
      mkdirSync(dir, { recursive: true });
      console.error(`[claude code] installing @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION} into ${dir} (once)…`);
      const npm = Bun.spawn(["npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--prefix", dir, `@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}`], {
        stdout: "pipe",
        stderr: "pipe",
      });
      if ((await npm.exited) !== 0 || !existsSync(native)) throw new Error(`npm install of Claude Code failed:\n${await new Response(npm.stderr).text()}`);
    }
    const bin = join(dir, "bin");
    mkdirSync(bin, { recursive: true });
    if (!existsSync(join(bin, "claude"))) symlinkSync(native, join(bin, "claude"));
    return bin;
  })();
  return installed;
}

/**
 * Types a prompt into Claude Code's input and submits it. Keys that arrive before it reads its
 * terminal are dropped, so the text is typed again (after Ctrl+U clears the line) until it shows.
 */
export async function typePrompt(tmux: Tmux, text: string): Promise<void> {
  await waitFor(
    async () => {
      tmux.keys("C-u");
      tmux.type(text, false);
      // (Claude Code puts a no-break space after its ❯.)
      return (await tmux.waitFor(new RegExp(`❯\\s${text}`), 3_000).catch(() => "")) !== "";
    },
    { timeoutMs: 60_000, what: `"${text}" in Claude Code's input` },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n--- screen ---\n${tmux.capture()}`);
  });
  tmux.keys("Enter");
}
