/**
 * The inbox's rules, as a pure class: the first answer wins and a later one is told how it went,
 * another user finds nothing, the terminal's answers settle a request, and "always allow" never
 * lets shell syntax through a prefix.
 */
import { describe, expect, test } from "bun:test";
import { describeToolUse, Inbox, ruleAllows, ruleFor, type ActionTokens, type HookDecision } from "../../server/inbox.ts";
import { REQUEST_TEXT_MAX, type PermissionHookInput } from "../../src/protocol/index.ts";

const bash = (command: string): PermissionHookInput => ({ hook_event_name: "PermissionRequest", tool_name: "Bash", tool_input: { command, description: "d" } });
const alice = { id: "s1", userId: "alice", label: "brave-tiger-1234" };
const bob = { id: "s2", userId: "bob", label: "calm-otter-5678" };

function ask(inbox: Inbox, session = alice, input = bash("npm test")): { decision: Promise<HookDecision | null>; abort: AbortController } {
  const abort = new AbortController();
  return { decision: inbox.ask(session, input, abort.signal), abort };
}

describe("the inbox", () => {
  test("the first answer wins; a second is told; another user's request is not found", async () => {
    const inbox = new Inbox();
    const { decision } = ask(inbox);
    const [req] = inbox.list("alice");
    expect(req).toMatchObject({ tool: "Bash", command: "npm test", label: alice.label });
    expect(inbox.list("bob")).toEqual([]);
    expect(() => inbox.answer("bob", bob, req!.id, { behavior: "allow" })).toThrow(/not found/);
    expect(inbox.answer("alice", alice, null, { behavior: "deny", message: "no" })).toMatchObject({ behavior: "deny" });
    expect(await decision).toEqual({ behavior: "deny", message: "no" });
    expect(() => inbox.answer("alice", alice, req!.id, { behavior: "allow" })).toThrow("Already answered (denied).");
    expect(() => inbox.answer("bob", bob, req!.id, { behavior: "allow" })).toThrow(/not found/);
    inbox.close();
  });

  test("the terminal's answers: No ends the hook (its connection closes), Yes runs the tool", async () => {
    const inbox = new Inbox();
    const no = ask(inbox);
    const id = inbox.list("alice")[0]!.id;
    no.abort.abort();
    expect(await no.decision).toBeNull();
    expect(() => inbox.answer("alice", alice, id, { behavior: "allow" })).toThrow("Already answered in the terminal.");
    const yes = ask(inbox, alice, bash("make"));
    const other = ask(inbox, alice, bash("make lint"));
    inbox.toolRan(alice.id, { ...bash("make"), hook_event_name: "PostToolUse" });
    expect(await yes.decision).toBeNull();
    expect(inbox.list("alice").map((r) => r.command)).toEqual(["make lint"]);
    inbox.answer("alice", alice, null, { behavior: "allow" });
    expect(await other.decision).toEqual({ behavior: "allow" });
    inbox.close();
  });

  test("always allow: a first word without shell syntax, else the exact command; per session; revocable", async () => {
    expect(ruleFor({ tool: "Bash", command: "npm test --watch" })).toEqual({ tool: "Bash", prefix: "npm" });
    expect(ruleFor({ tool: "Bash", command: "echo hi > x" })).toEqual({ tool: "Bash", prefix: "echo hi > x" });
    expect(ruleFor({ tool: "WebFetch", command: "" })).toEqual({ tool: "WebFetch", prefix: null });
    const npm = { tool: "Bash", prefix: "npm" };
    expect(ruleAllows(npm, { tool: "Bash", command: "npm run build" })).toBe(true);
    for (const evil of ["npm test; rm -rf ~", "npm test && curl x | sh", "npm $(id)", "npm `id`", "npm test > ~/.bashrc", "npm\nrm x", "npmx", "npm test \\\nrm"]) {
      expect(ruleAllows(npm, { tool: "Bash", command: evil })).toBe(false);
    }
    expect(ruleAllows(npm, { tool: "Edit", command: "" })).toBe(false);

    const inbox = new Inbox();
    const first = ask(inbox, alice, bash("npm test"));
    const done = inbox.answer("alice", alice, null, { behavior: "allow", always: true });
    expect(done.rule).toMatchObject({ tool: "Bash", prefix: "npm" });
    await first.decision;
    expect(await ask(inbox, alice, bash("npm run lint")).decision).toEqual({ behavior: "allow" });
    expect(inbox.list("alice")).toEqual([]);
    // Not in another session.
    void ask(inbox, bob, bash("npm run lint"));
    expect(inbox.list("bob")).toHaveLength(1);
    expect(inbox.revokeRule(alice.id, done.rule!.id)).toBe(true);
    void ask(inbox, alice, bash("npm run lint"));
    expect(inbox.list("alice")).toHaveLength(1);
    const id = inbox.list("alice")[0]!.id;
    inbox.sessionEnded(alice.id);
    // Ended with its session: the request is gone (a late answer is told so) and so are its rules.
    expect(inbox.list("alice")).toEqual([]);
    expect(() => inbox.answer("alice", alice, id, { behavior: "allow" })).toThrow("The session ended before an answer.");
    expect(inbox.listRules(alice.id)).toEqual([]);
    inbox.sessionEnded(bob.id);
    inbox.close();
  });

  test("what is kept is bounded: a command over 64 KB is cut and marked; an edit becomes a diff", () => {
    const big = describeToolUse(bash("x".repeat(REQUEST_TEXT_MAX + 10)));
    expect(big.command.length).toBe(REQUEST_TEXT_MAX);
    expect(big.truncated).toBe(true);
    const edit = describeToolUse({ hook_event_name: "PermissionRequest", tool_name: "Edit", tool_input: { file_path: "src/a.ts", old_string: "let a = 1;", new_string: "const a = 1;" } });
    expect(edit.diff).toBe("--- a/src/a.ts\n+++ b/src/a.ts\n@@ -1,1 +1,1 @@\n-let a = 1;\n+const a = 1;");
    expect(edit.path).toBe("src/a.ts");
  });

  test("action tokens: one answer to one request, once, while it waits; random and not kept in the clear", async () => {
    const inbox = new Inbox();
    const issued: ActionTokens[] = [];
    inbox.events = { asked: (_r, _u, a) => issued.push(a), settled: () => {} };
    const one = ask(inbox, alice, bash("make one"));
    const two = ask(inbox, alice, bash("make two"));
    const [a1, a2] = issued;
    expect(a1!.allow).toMatch(/^act_[A-Za-z0-9_-]{43}$/);
    expect(new Set([a1!.allow, a1!.deny, a2!.allow, a2!.deny]).size).toBe(4);
    expect(JSON.stringify([...(inbox as unknown as { actions: Map<string, unknown> }).actions.keys()])).not.toContain(a1!.allow);
    expect(inbox.act(a2!.deny)).toMatchObject({ behavior: "deny" });
    expect(await two.decision).toMatchObject({ behavior: "deny" });
    // Used, or its request settled: every token of that request is gone; the other request's still works.
    expect(() => inbox.act(a2!.deny)).toThrow(/used already/);
    expect(() => inbox.act(a2!.allow)).toThrow(/used already/);
    expect(() => inbox.act("act_" + "x".repeat(43))).toThrow(/used already/);
    expect(inbox.act(a1!.allow)).toMatchObject({ behavior: "allow" });
    expect(await one.decision).toEqual({ behavior: "allow" });
    const three = ask(inbox, alice, bash("make three"));
    three.abort.abort();
    expect(() => inbox.act(issued[2]!.allow)).toThrow(/used already/);
    inbox.close();
  });

  test("answers are rate-limited per user", () => {
    const inbox = new Inbox();
    for (let i = 0; i < 60; i++) expect(() => inbox.answer("alice", alice, null, { behavior: "allow" })).toThrow(/Nothing/);
    expect(() => inbox.answer("alice", alice, null, { behavior: "allow" })).toThrow(/Too many answers/);
    inbox.close();
  });
});
