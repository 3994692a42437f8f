/**
 * The session picker through ink-testing-library: frames as text, keys written to its stdin, the
 * callbacks it makes. It never calls the API itself (it has none to call).
 */
import { afterEach, describe, expect, mock, test } from "bun:test";
import { render } from "ink-testing-library";
import { Session } from "../../src/protocol/index.ts";
import { SessionPicker, type SessionPickerProps } from "../../src/tui/picker/SessionPicker.tsx";
import { initialState, pickerReducer, visible } from "../../src/tui/picker/state.ts";
import { waitFor } from "../helpers/wait.ts";

const NOW = Date.parse("2026-11-29T12:00:00Z");
const minutesAgo = (m: number): string => new Date(NOW - m * 60_000).toISOString();

function session(label: string, status: Session["status"] = "running", extra: Partial<Session> = {}): Session {
  return Session.parse({
    label,
    status,
    region: "local",
    command: [],
    createdAt: minutesAgo(30),
    endedAt: status === "running" ? null : minutesAgo(5),
    exitCode: null,
    endReason: null,
    saves: [],
    finalSave: null,
    ...extra,
  });
}

const KEYS = { down: "\u001B[B", up: "\u001B[A", enter: "\r", escape: "\u001B", right: "\u001B[C", backspace: "\u007F" };

let cleanup: (() => void) | null = null;
afterEach(() => {
  cleanup?.();
  cleanup = null;
});

function picker(sessions: Session[], extra: Partial<SessionPickerProps> = {}) {
  const cb = { onSelect: mock(), onStop: mock(), onDownload: mock(), onRefresh: mock(), onCancel: mock() };
  const r = render(<SessionPicker sessions={sessions} now={() => NOW} {...cb} {...extra} />);
  cleanup = r.unmount;
  const frame = (): string => r.lastFrame() ?? "";
  /** Writes keys one at a time, yielding between them so each is read as its own key. */
  const press = async (...keys: string[]): Promise<void> => {
    for (const k of keys) {
      r.stdin.write(k);
      await Bun.sleep(0);
    }
  };
  /** Resolves once the frame matches (Ink draws after the keys are read). */
  const shows = (what: string | RegExp): Promise<unknown> =>
    waitFor(() => (typeof what === "string" ? frame().includes(what) : what.test(frame())), { timeoutMs: 5_000, what: `${what} in the picker` });
  /** Resolves once `check` holds (a callback the picker made). */
  const until = (check: () => boolean, what: string): Promise<unknown> => waitFor(check, { timeoutMs: 5_000, what });
  return { ...r, cb, frame, press, shows, until };
}

const fleet = [
  session("brave-tiger-1234", "running", { attention: { state: "waiting", since: minutesAgo(2) }, saves: [{ id: "s1-aaaaaaaa", createdAt: minutesAgo(1), size: 10, files: 1, reason: "interval" }] }),
  session("calm-otter-2345", "running", { attention: { state: "working", since: minutesAgo(1) } }),
  session("dusty-crane-3456", "stopped"),
  session("eager-lynx-4567", "failed"),
];

describe("the picker", () => {
  test("rows: label, status, what the program is doing, region, ages, latest save; the keys", () => {
    const { frame } = picker(fleet);
    const text = frame();
    expect(text).toMatch(/❯ brave-tiger-1234\s+● running\s+waiting 2m\s+local\s+30m ago/);
    expect(text).toContain("1m ago");
    expect(text).toMatch(/calm-otter-2345\s+● running\s+working/);
    expect(text).toMatch(/dusty-crane-3456\s+● stopped/);
    expect(text).toContain("4 sessions");
    expect(text).toContain("Enter connect");
  });

  test("a running session's listening ports on a line under its row: 3000 · node", () => {
    const { frame } = picker([session("brave-tiger-1234", "running", { ports: [{ port: 3000, name: "node" }, { port: 8000, name: "python3" }] })]);
    expect(frame()).toMatch(/❯ brave-tiger-1234\s+● running\s+local\s+30m ago[^\n]*\n\s+ports 3000 · node, 8000 · python3\n/);
  });

  test("↓/j and ↑/k move; Enter connects; v views", async () => {
    const p = picker(fleet);
    await p.press(KEYS.down, "j");
    await p.shows(/❯ dusty-crane-3456/);
    await p.press("k", KEYS.up);
    await p.press(KEYS.enter);
    await p.until(() => p.cb.onSelect.mock.calls.length === 1, "Enter");
    expect(p.cb.onSelect).toHaveBeenCalledWith(fleet[0], false);
    await p.press("j", "v");
    await p.until(() => p.cb.onSelect.mock.calls.length === 2, "v");
    expect(p.cb.onSelect).toHaveBeenLastCalledWith(fleet[1], true);
  });

  test("s asks y/n before stopping; n keeps it running; a stopped session says so", async () => {
    const p = picker(fleet);
    await p.press("s");
    await p.shows("Stop brave-tiger-1234? Its workspace is saved first. (y/n)");
    await p.press("n");
    await p.shows("Enter connect");
    expect(p.cb.onStop).not.toHaveBeenCalled();
    await p.press("s", "y");
    await p.until(() => p.cb.onStop.mock.calls.length === 1, "y");
    expect(p.cb.onStop).toHaveBeenCalledWith(fleet[0]);
    await p.press("j", "j", "s");
    await p.shows("dusty-crane-3456 is stopped already.");
  });

  test("/ filters by label; Esc clears it; d downloads; r refreshes; q and Esc quit, Ctrl+C as interrupted", async () => {
    const p = picker(fleet);
    await p.press("/", "o", "t", "t");
    await p.shows("/ ott");
    await p.shows("calm-otter-2345");
    expect(p.frame()).not.toContain("brave-tiger-1234");
    await p.press(KEYS.enter, "d");
    await p.until(() => p.cb.onDownload.mock.calls.length === 1, "d");
    expect(p.cb.onDownload).toHaveBeenCalledWith(fleet[1]);
    await p.press("/", KEYS.escape);
    // A lone Esc is told from the start of an escape sequence after a short wait.
    await waitFor(() => p.frame().includes("brave-tiger-1234"), { what: "the filter cleared" });
    await p.press("r");
    await p.until(() => p.cb.onRefresh.mock.calls.length > 0, "r");
    await p.press("q");
    await p.until(() => p.cb.onCancel.mock.calls.length === 1, "q");
    expect(p.cb.onCancel).toHaveBeenLastCalledWith(false);
    await p.press(KEYS.escape);
    await waitFor(() => p.cb.onCancel.mock.calls.length === 2, { what: "Esc to quit" });
    await p.press("\u0003");
    await p.until(() => p.cb.onCancel.mock.calls.length === 3, "Ctrl+C");
    expect(p.cb.onCancel).toHaveBeenLastCalledWith(true);
  });

  test("10 a page, → and ← turn pages; the cursor keeps its session when the list changes", async () => {
    const many = Array.from({ length: 23 }, (_, i) => session(`quick-fox-${String(1000 + i)}`));
    const p = picker(many);
    await p.shows("page 1/3");
    await p.press(KEYS.right);
    await p.shows("page 2/3");
    await p.shows(/❯ quick-fox-1010/);
    expect(p.frame()).not.toContain("quick-fox-1009");
    await p.press("j", "j");
    // A new session at the top: the cursor stays on quick-fox-1012.
    p.rerender(<SessionPicker sessions={[session("new-one-0001"), ...many]} now={() => NOW} {...p.cb} />);
    await waitFor(() => /❯ quick-fox-1012/.test(p.frame()), { what: "the cursor on its session" });
  });

  test("no sessions: what to do", () => {
    expect(picker([]).frame()).toContain("No sessions yet. Start one with catty new");
  });
});

describe("the picker's state", () => {
  test("moves stay in the list; a filter with no match is empty, not an error", () => {
    let s = initialState(fleet);
    s = pickerReducer(s, { type: "move", by: -5 });
    expect(s.cursor).toBe(0);
    s = pickerReducer(s, { type: "move", by: 50 });
    expect(s.cursor).toBe(3);
    s = pickerReducer(s, { type: "filter-type", text: "zzz" });
    expect(visible(s)).toEqual([]);
    expect(pickerReducer(s, { type: "move", by: 1 }).cursor).toBe(0);
  });
});
