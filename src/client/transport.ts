/**
 * The CLI never sends a token in clear over a network: an `http://` server is used only on this
 * machine's loopback, or where the user said `--insecure` (a private network they trust), with a
 * warning each time.
 */
import { isIP } from "node:net";
import { CattyError } from "../protocol/errors.ts";
import { ui } from "./ui.ts";

/** Whether `host` (a URL's hostname) is this machine's loopback: 127.0.0.0/8, ::1, localhost and its names. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost") || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

/**
 * Throws unless a token may go to `api`: https, or http to loopback, or http with `insecure`
 * (then warns). `how` says how the user turns `insecure` on where they are.
 */
export function checkTransport(api: string, insecure: boolean, how = "--insecure"): void {
  const url = new URL(api);
  if (url.protocol === "https:" || isLoopbackHost(url.hostname)) return;
  const secure = `https://${url.host}${url.pathname === "/" ? "" : url.pathname}`;
  if (!insecure) {
    throw new CattyError(
      "bad_request",
      `Refusing to send your token in clear to ${api}: anyone on the network path could read it and act as you.`,
      `Use ${secure} (\`catty-server --domain\` gets a certificate by itself), or ${how} on a private network you trust.`,
    );
  }
  ui.warn(`Sending your token unencrypted to ${api} (${how}): use https:// unless this network is private and trusted.`);
}
