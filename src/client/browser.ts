/**
 * Opening a page in the user's browser (`open` on macOS, `xdg-open` elsewhere) when there is a
 * display to show it on. False when it could not try: the caller shows the URL instead.
 */
export function openInBrowser(url: string): boolean {
  const bin = Bun.which(process.platform === "darwin" ? "open" : "xdg-open");
  if (!bin || (process.platform === "linux" && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY)) return false;
  try {
    Bun.spawn([bin, url], { stdio: ["ignore", "ignore", "ignore"] }).unref();
    return true;
  } catch {
    return false;
  }
}
