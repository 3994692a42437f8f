/** A browser notification when a session starts waiting for its user (with the page's permission, when the page is not in front). */
export function notifyWaiting(label: string): void {
  if (typeof Notification === "undefined" || Notification.permission !== "granted" || document.hasFocus()) return;
  new Notification(`${label} is waiting for you`, { body: "Catty", tag: `catty-${label}` });
}
