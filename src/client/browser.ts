/**
 * Opening a page in the user's browser (`open` on macOS, `xdg-open` elsewhere) when there is a
 * display to show it on. False when it could not try: the caller shows the URL instead.
 *
 * Only an http(s) page on the origin the caller names is opened: `open` and `xdg-open` hand
 * anything else (`smb://`, `file://`, a custom scheme…) to whatever program claims it, so a URL a
 * server sent could otherwise start more than a browser.
 */
export function openInBrowser(url: string, origin: string): boolean {
  if (!browsable(url, origin)) return false;
  const bin = Bun.which(process.platform === "darwin" ? "open" : "xdg-open");
  if (!bin || (process.platform === "linux" && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY)) return false;
  try {
    Bun.spawn([bin, url], { stdio: ["ignore", "ignore", "ignore"] }).unref();
    return true;
  } catch {
    return false;
  }
}

/** Whether `url` is an http(s) URL on `origin` (the server's own, or a known site's). */
export function browsable(url: string, origin: string): boolean {
  let u: URL;
  let o: URL;
  try {
    u = new URL(url);
    o = new URL(origin);
  } catch {
    return false;
  }
  return (u.protocol === "http:" || u.protocol === "https:") && u.origin === o.origin;
}
