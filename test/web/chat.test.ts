/** Chat mode's reading of a screen: bubbles from the lines xterm.js holds, for a shell and for Claude Code's layout. */
import { describe, expect, test } from "bun:test";
import { chatBubbles, inputAreaStart, type ScreenLine } from "../../server/web/app/chat.ts";

const screen = (...texts: string[]): ScreenLine[] => texts.map((text) => ({ text, wrapped: false }));
const RULE = "─".repeat(40);

describe("chat bubbles", () => {
  test("a shell: each command where it was echoed, the output after it as the reply", () => {
    const lines = screen("$ echo chat-5", "chat-5", "$ sleep 100", "^C", "$ echo back-7", "back-7", "$");
    const bubbles = chatBubbles(lines, 0, [
      { text: "echo chat-5", line: 0 },
      { text: "sleep 100", line: 2 },
      { text: "echo back-7", line: 4 },
    ]);
    expect(bubbles).toEqual([
      { from: "you", text: "echo chat-5" },
      { from: "program", text: "chat-5" },
      { from: "you", text: "sleep 100" },
      { from: "program", text: "^C" },
      { from: "you", text: "echo back-7" },
      { from: "program", text: "back-7\n$" },
    ]);
  });

  test("Claude Code: the message where its history shows it, the reply in order, its input box and hints left out", () => {
    const lines = screen(
      "Claude Code v2.1.332",
      "",
      "❯ Say hello in chat",
      "",
      "⏺ Chat hello from the stand-in.",
      "",
      "✻ Crunched for 0s",
      RULE,
      "❯\u00a0",
      RULE,
      "  ⏵⏵ auto mode on (shift+tab to cycle)",
    );
    // The cursor was in the input box when the message was sent (line 8).
    const bubbles = chatBubbles(lines, 0, [{ text: "Say hello in chat", line: 8 }]);
    expect(bubbles).toEqual([
      { from: "program", text: "Claude Code v2.1.332" },
      { from: "you", text: "Say hello in chat" },
      { from: "program", text: "Chat hello from the stand-in.\n\nCrunched for 0s" },
    ]);
  });

  test("a message the program has not shown yet goes last; a reply that quotes it does not move it", () => {
    const lines = screen("❯ first", "it said: first", RULE, "❯ second", RULE, "hints");
    expect(chatBubbles(lines, 0, [{ text: "first", line: 0 }, { text: "second", line: 3 }])).toEqual([
      { from: "you", text: "first" },
      { from: "program", text: "it said: first" },
      { from: "you", text: "second" },
    ]);
  });

  test("the input area: two close rules at the bottom, or one near the end; none in a plain shell", () => {
    expect(inputAreaStart(screen("a", RULE, "❯", RULE, "hint"), 0)).toBe(1);
    expect(inputAreaStart(screen("a", "b", RULE, "❯ "), 0)).toBe(2);
    expect(inputAreaStart(screen("$ ls", "file", "$"), 0)).toBe(3);
    // A rule in the scrollback (above the screen) is output, not the input area.
    expect(inputAreaStart(screen(RULE, "x", RULE, "y", "z"), 3)).toBe(5);
  });
});
