/**
 * The attention tracker: Claude Code's hook markers (split anywhere across chunks) drive the state
 * once seen; for other programs output means working, a bell waiting (but not the BEL that ends
 * an OSC sequence), and silence after output waiting or idle depending on whether the foreground
 * process reads its terminal.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ATTENTION_OSC, AttentionTracker, claudeHookSettings } from "../../agent/attention.ts";
import type { Attention } from "../../src/protocol/index.ts";
import { waitFor } from "../helpers/wait.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const marker = (state: string): string => `\x1b]${ATTENTION_OSC}${state}\x07`;

function tracker(opts: { readsInput?: boolean | null; quietMs?: number } = {}) {
  const sent: Attention[] = [];
  const t = new AttentionTracker({ send: (a) => sent.push(a), quietMs: opts.quietMs ?? 60_000, readsInput: () => opts.readsInput ?? null });
  return { t, states: () => sent.map((a) => a.state), sent };
}

describe("attention", () => {
  test("Claude Code's hook markers, split anywhere, set the state; then output alone does not", () => {
    const text = enc(`hello ${marker("waiting;idle")} more ${marker("working")}x${marker("waiting;permission")}`);
    for (const step of [1, 3, 11, text.length]) {
      const { t, states } = tracker();
      for (let i = 0; i < text.length; i += step) t.output(text.subarray(i, i + step));
      expect(states()).toEqual(["waiting", "working", "waiting"]);
      t.output(enc("redraw while waiting"));
      expect(t.current.state).toBe("waiting");
      // Answering the permission prompt: working again.
      t.input();
      expect(t.current.state).toBe("working");
      t.close();
    }
  });

  test("the scanner (native searches through plain text) hears a bell exactly where one byte at a time would, cut anywhere", () => {
    const BEL = 0x07;
    const ESC = 0x1b;
    /** The reference, one byte at a time: whether a chunk holds a bell in plain text (not the BEL ending an OSC). */
    const reference = (): ((chunk: Uint8Array) => boolean) => {
      let scan: "text" | "esc" | "osc" | "osc-esc" = "text";
      return (chunk) => {
        let bell = false;
        for (const b of chunk) {
          if (scan === "text") {
            if (b === ESC) scan = "esc";
            else if (b === BEL) bell = true;
          } else if (scan === "esc") scan = b === 0x5d ? "osc" : b === ESC ? "esc" : "text";
          else if (scan === "osc") scan = b === BEL ? "text" : b === ESC ? "osc-esc" : "osc";
          else scan = b === 0x5c ? "text" : "osc";
        }
        return bell;
      };
    };
    const part = fc.constantFrom("text ", "\x07", "\x1b]0;title\x07", "\x1b]2;t\x1b\\", "\x1b[31m", "\x1b", "]", "\x1b\x1b", "x".repeat(300));
    fc.assert(
      fc.property(fc.array(part, { maxLength: 12 }), fc.integer({ min: 1, max: 40 }), (parts, step) => {
        const bytes = enc(parts.join(""));
        const { t } = tracker();
        const bells = reference();
        for (let i = 0; i < bytes.length; i += step) {
          const chunk = bytes.subarray(i, i + step);
          t.output(chunk);
          // Waiting after a chunk that held a bell, working after one that did not.
          expect(t.current.state).toBe(bells(chunk) ? "waiting" : "working");
        }
        t.close();
      }),
    );
  });

  test("a bell means waiting; the BEL ending an OSC title does not; output means working", () => {
    const { t, states } = tracker();
    t.output(enc("\x1b]0;my title\x07prompt$ "));
    expect(t.current.state).toBe("working");
    t.output(enc("\x1b]2;t2\x1b\\"));
    expect(t.current.state).toBe("working");
    t.output(enc("done\x07"));
    expect(t.current.state).toBe("waiting");
    t.output(enc("more output"));
    expect(states()).toEqual(["waiting", "working"]);
    t.close();
  });

  test("silence after output: waiting when the foreground process reads its terminal, else idle", async () => {
    const reading = tracker({ readsInput: true, quietMs: 30 });
    reading.t.output(enc("$ "));
    await waitFor(() => reading.t.current.state === "waiting", { what: "waiting" });
    reading.t.close();
    const unknown = tracker({ readsInput: null, quietMs: 30 });
    unknown.t.output(enc("..."));
    await waitFor(() => unknown.t.current.state === "idle", { what: "idle" });
    unknown.t.close();
  });

  test("the hook settings name every event the issue needs, each writing its marker to the terminal; the permission ones ask the inbox", () => {
    const settings = JSON.parse(claudeHookSettings()) as { hooks: Record<string, Array<{ matcher?: string; hooks: Array<{ command: string }> }>> };
    expect(Object.keys(settings.hooks).sort()).toEqual(["Notification", "PermissionRequest", "PostToolUse", "PostToolUseFailure", "Stop", "UserPromptSubmit"]);
    expect(settings.hooks.Notification?.map((h) => h.matcher)).toEqual(["permission_prompt", "idle_prompt"]);
    for (const [event, list] of Object.entries(settings.hooks)) {
      for (const h of list) expect(h.hooks[0]?.command).toContain(event.startsWith("PostToolUse") ? "/catty/permission" : "> /dev/tty");
    }
    expect(settings.hooks.PermissionRequest?.[0]?.hooks[1]?.command).toContain('"$ANTHROPIC_BASE_URL/catty/permission"');
  });
});
