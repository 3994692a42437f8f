/**
 * Debian's Chromium driven by `playwright-core` (both installed by the test setup), headless, with
 * a fresh profile and no background traffic. Screenshots go to `<tmp>/catty-screenshots/`.
 */
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";

export const SCREENSHOTS = join(tmpdir(), "catty-screenshots");

/** `args`: more Chromium switches (the TLS tests trust a test CA's key with one). */
export async function launchBrowser(args: readonly string[] = []): Promise<Browser> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: Bun.which("chromium") ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", ...args],
  });
}
