/**
 * Whether the program waits for its user ("waiting for you"), from what it writes to its terminal:
 *
 * - **Claude Code's hooks.** The agent starts Claude Code with hooks (`claudeHookSettings`) that
 *   write a private OSC sequence to the session's terminal (`ESC ] 7737 ; catty-attention ; STATE
 *   … BEL`): waiting on a permission prompt or when it is done and idle, working when a prompt is
 *   submitted. The terminal is the program's own, so the channel reaches nothing else; terminals
 *   ignore an OSC they do not know. Once a hook has spoken, hooks alone (and the user's answer to
 *   a permission prompt) move the state.
 * - **Any other program.** Output means working; a terminal bell (BEL outside an OSC sequence)
 *   means waiting; output that stops for `quietMs` means waiting when the program's foreground
 *   process is blocked reading its terminal (`readsInput`), else idle.
 */
import { readFileSync } from "node:fs";
import type { Attention, AttentionState } from "../src/protocol/index.ts";

export const ATTENTION_OSC = "7737;catty-attention;";

export interface AttentionOptions {
  send(attention: Attention): void;
  /** Silence after output before a program counts as quiet. Default 10 s. */
  quietMs?: number;
  /** Whether the program's foreground process waits for terminal input; null: cannot tell. */
  readsInput?(): boolean | null;
}

const ESC = 0x1b;
const BEL = 0x07;

export class AttentionTracker {
  private state: AttentionState = "working";
  private since = new Date().toISOString();
  /** Whether Claude Code's hooks drive the state. */
  private hooked = false;
  private waitingOnPermission = false;
  private quietTimer: Timer | null = null;
  // The escape-sequence scanner: normal text, after ESC, inside an OSC, after ESC inside an OSC.
  private scan: "text" | "esc" | "osc" | "osc-esc" = "text";
  private osc: number[] = [];

  constructor(private readonly opts: AttentionOptions) {}

  get current(): Attention {
    return { state: this.state, since: this.since };
  }

  /** The program wrote `data` to its terminal. */
  output(data: Uint8Array): void {
    let bell = false;
    const n = data.length;
    /** The next BEL at or after the scan in plain text (-1: none left), found natively. */
    let nextBel = -2;
    let i = 0;
    while (i < n) {
      if (this.scan === "text") {
        // Plain text costs two native searches, not a step per byte: bulk output passes at the
        // speed of a copy.
        const esc = data.indexOf(ESC, i);
        const end = esc < 0 ? n : esc;
        if (!bell && nextBel !== -1) {
          if (nextBel < i) nextBel = data.indexOf(BEL, i);
          if (nextBel >= 0 && nextBel < end) bell = true;
        }
        if (esc < 0) break;
        this.scan = "esc";
        i = esc + 1;
        continue;
      }
      const b = data[i++] as number;
      switch (this.scan) {
        case "esc":
          if (b === 0x5d /* ] */) {
            this.scan = "osc";
            this.osc = [];
          } else this.scan = b === ESC ? "esc" : "text";
          break;
        case "osc":
          if (b === BEL) this.endOsc();
          else if (b === ESC) this.scan = "osc-esc";
          else if (this.osc.length < 256) this.osc.push(b);
          break;
        case "osc-esc":
          if (b === 0x5c /* \ */) this.endOsc();
          else {
            this.scan = "osc";
            if (this.osc.length < 256) this.osc.push(ESC, b);
          }
          break;
      }
    }
    if (this.hooked) return;
    if (bell) {
      this.clearQuiet();
      this.set("waiting");
      return;
    }
    this.set("working");
    this.armQuiet();
  }

  /** The user typed into the program. */
  input(): void {
    if (this.hooked) {
      // Answering a permission prompt sets Claude Code to work again (no hook says so).
      if (this.waitingOnPermission) {
        this.waitingOnPermission = false;
        this.set("working");
      }
      return;
    }
    this.set("working");
    this.armQuiet();
  }

  /** Sends the state again (a new link to the server). */
  resend(): void {
    this.opts.send(this.current);
  }

  close(): void {
    this.clearQuiet();
  }

  private endOsc(): void {
    this.scan = "text";
    const text = new TextDecoder().decode(new Uint8Array(this.osc));
    if (!text.startsWith(ATTENTION_OSC)) return;
    const [state, reason] = text.slice(ATTENTION_OSC.length).split(";");
    if (state !== "waiting" && state !== "working" && state !== "idle") return;
    this.hooked = true;
    this.clearQuiet();
    this.waitingOnPermission = state === "waiting" && reason === "permission";
    this.set(state);
  }

  private set(state: AttentionState): void {
    if (state === this.state) return;
    this.state = state;
    this.since = new Date().toISOString();
    this.opts.send(this.current);
  }

  private armQuiet(): void {
    this.clearQuiet();
    this.quietTimer = setTimeout(() => {
      this.quietTimer = null;
      if (this.hooked || this.state !== "working") return;
      this.set(this.opts.readsInput?.() === true ? "waiting" : "idle");
    }, this.opts.quietMs ?? 10_000);
  }

  private clearQuiet(): void {
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = null;
  }
}

/** Kernel wait channels of a process blocked on terminal (or any) input. */
const INPUT_WAITS = new Set(["n_tty_read", "wait_woken", "do_select", "core_sys_select", "poll_schedule_timeout", "do_sys_poll", "ep_poll", "do_epoll_wait"]);

/**
 * Whether the foreground process of the program's terminal waits for input, read from /proc:
 * the terminal's foreground process group (field 8 of the program's `stat`), then that group
 * leader's wait channel. Null when the kernel does not say (no permission, or not Linux).
 */
export function foregroundReadsInput(pid: number | null): boolean | null {
  if (pid === null) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const tpgid = Number(fields[5]);
    if (!(tpgid > 0)) return null;
    const wchan = readFileSync(`/proc/${tpgid}/wchan`, "utf8").trim();
    if (!wchan || wchan === "0") return null;
    return INPUT_WAITS.has(wchan);
  } catch {
    return null;
  }
}

/**
 * The `PermissionRequest` hook that asks the server's inbox (server/inbox.ts): Claude Code's input
 * posted with the session's own Claude API token to where its API calls go, and the answer, held
 * until the user gives one, printed as the hook's decision. Without Catty's API access (the user's
 * own key) or when the server refuses, it prints nothing: the terminal's dialog decides.
 */
const postHook = (maxTime: number, quiet: boolean): string =>
  '[ -n "$ANTHROPIC_AUTH_TOKEN" ] && [ -n "$ANTHROPIC_BASE_URL" ] || exit 0; ' +
  `exec curl -sf --max-time ${maxTime} -H "Authorization: Bearer $ANTHROPIC_AUTH_TOKEN" -H "Content-Type: application/json" ` +
  `--data-binary @- "$ANTHROPIC_BASE_URL/catty/permission"${quiet ? " -o /dev/null" : ""} 2>/dev/null`;
export const PERMISSION_HOOK = postHook(86_400, false);
/**
 * "Yes" in the terminal's dialog leaves the permission hook running (Claude Code no longer reads
 * it); the tool's `PostToolUse` (or `PostToolUseFailure`) hook tells the inbox that use was answered.
 */
const TOOL_RAN_HOOK = `${postHook(5, true)} || true`;

/** How long Claude Code lets the permission hook wait for an answer (seconds): a day. */
const PERMISSION_HOOK_TIMEOUT_S = 86_400;

/** Claude Code settings (`claude --settings`) whose hooks report to `AttentionTracker` and ask the inbox. */
export function claudeHookSettings(): string {
  const report = (state: string): { type: "command"; command: string } => ({
    type: "command",
    command: `printf '\\033]${ATTENTION_OSC}${state}\\007' > /dev/tty 2>/dev/null || true`,
  });
  return JSON.stringify({
    hooks: {
      Notification: [
        { matcher: "permission_prompt", hooks: [report("waiting;permission")] },
        { matcher: "idle_prompt", hooks: [report("waiting;idle")] },
      ],
      PermissionRequest: [{ matcher: "*", hooks: [report("waiting;permission"), { type: "command", command: PERMISSION_HOOK, timeout: PERMISSION_HOOK_TIMEOUT_S }] }],
      // A tool that ran was answered (in the terminal, when the inbox still holds its request).
      PostToolUse: [{ matcher: "*", hooks: [{ type: "command", command: TOOL_RAN_HOOK, timeout: 10 }] }],
      PostToolUseFailure: [{ matcher: "*", hooks: [{ type: "command", command: TOOL_RAN_HOOK, timeout: 10 }] }],
      UserPromptSubmit: [{ hooks: [report("working")] }],
      Stop: [{ hooks: [report("waiting;idle")] }],
    },
  });
}
