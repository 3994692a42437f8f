/**
 * The dashboard's browser code (server/web/app/), bundled with `Bun.build` for the browser: built
 * into the `catty-server` binary by build.ts (`CATTY_WEB_ASSETS`, so the binary needs nothing
 * beside it), or, when the server runs from source, built on first use. Served under names that
 * carry the content's hash, so browsers may cache them for good.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";

declare const CATTY_WEB_ASSETS: { js: string; css: string } | undefined;

export interface WebAssets {
  js: string;
  css: string;
  /** Of both, for the file names. */
  hash: string;
}

/** Bundles the dashboard (used by build.ts, and by a server running from source). */
export async function buildWebAssets(minify = true): Promise<{ js: string; css: string }> {
  const result = await Bun.build({ entrypoints: [join(import.meta.dir, "app", "main.tsx")], target: "browser", minify, sourcemap: "none" });
  if (!result.success) throw new Error(`the dashboard does not build:\n${result.logs.map(String).join("\n")}`);
  let js = "";
  let css = "";
  for (const out of result.outputs) {
    if (out.path.endsWith(".css")) css += await out.text();
    else if (out.kind === "entry-point") js = await out.text();
  }
  return { js, css };
}

let assets: Promise<WebAssets> | null = null;

export function webAssets(): Promise<WebAssets> {
  assets ??= (async () => {
    const built = typeof CATTY_WEB_ASSETS !== "undefined" ? CATTY_WEB_ASSETS : await buildWebAssets();
    return { ...built, hash: createHash("sha256").update(built.js).update(built.css).digest("hex").slice(0, 16) };
  })();
  return assets;
}
