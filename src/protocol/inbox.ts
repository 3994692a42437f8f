/**
 * The approval inbox's wire shapes: what Claude Code's `PermissionRequest` hook posts (its own
 * input, as Claude Code documents it), a pending request as the user sees it, an answer, and the
 * session's "always allow" rules.
 */
import { z } from "zod";

/** What of a request's tool input is kept: the command, a diff, a URL are cut to this many bytes. */
export const REQUEST_TEXT_MAX = 64 * 1024;
/** The hook's body is refused past this size (Claude Code's own tool input can be larger: a Write of a big file). */
export const HOOK_BODY_MAX = 1024 * 1024;

/** The `PermissionRequest` hook's input, or a `PostToolUse`/`PostToolUseFailure` one (Claude Code's fields we read; others are ignored). */
export const PermissionHookInput = z.object({
  hook_event_name: z.enum(["PermissionRequest", "PostToolUse", "PostToolUseFailure"]),
  tool_name: z.string().min(1).max(200),
  tool_input: z.record(z.string(), z.unknown()).default({}),
});
export type PermissionHookInput = z.infer<typeof PermissionHookInput>;

/** A request waiting for its user's answer. */
export const PendingRequest = z.object({
  id: z.string().max(64),
  label: z.string().max(64),
  tool: z.string().max(200),
  /** The Bash command; empty for other tools. */
  command: z.string().max(REQUEST_TEXT_MAX).default(""),
  /** The file an edit or write changes. */
  path: z.string().max(4096).default(""),
  /** The proposed change as a unified diff (edits, writes). */
  diff: z.string().max(REQUEST_TEXT_MAX).default(""),
  /** The URL of a fetch. */
  url: z.string().max(4096).default(""),
  /** What the tool says it would do. */
  description: z.string().max(4096).default(""),
  /** Whether any of the above was cut to `REQUEST_TEXT_MAX`. */
  truncated: z.boolean().default(false),
  createdAt: z.string(),
});
export type PendingRequest = z.infer<typeof PendingRequest>;
export const PendingRequests = z.array(PendingRequest).max(10_000);

/** An "always allow" rule of one session: a Bash command prefix, or a whole tool. */
export const AllowRule = z.object({
  id: z.string().max(64),
  tool: z.string().min(1).max(200),
  /** For Bash: commands starting with this word sequence; null: every use of the tool. */
  prefix: z.string().max(4096).nullable(),
  createdAt: z.string(),
});
export type AllowRule = z.infer<typeof AllowRule>;
export const AllowRules = z.array(AllowRule).max(1000);

/** The user's answer to a pending request. */
export const RequestAnswer = z.object({
  behavior: z.enum(["allow", "deny"]),
  /** Told to Claude with a denial. */
  message: z.string().max(2000).optional(),
  /** With allow: allow the same from now on in this session (a Bash command's first word, else the tool). */
  always: z.boolean().optional(),
});
export type RequestAnswer = z.infer<typeof RequestAnswer>;

/** How a request was settled: answered from outside, in the terminal, or its session ended. */
export const SettledHow = z.enum(["allow", "deny", "terminal", "ended"]);
export type SettledHow = z.infer<typeof SettledHow>;
export const SettledRequests = z.array(z.object({ id: z.string().max(64), how: SettledHow })).max(10_000);
export type SettledRequests = z.infer<typeof SettledRequests>;

/** How an answer went. */
export const AnswerResult = z.object({
  answered: z.literal(true),
  id: z.string().max(64),
  behavior: z.enum(["allow", "deny"]),
  rule: AllowRule.nullable().default(null),
});
export type AnswerResult = z.infer<typeof AnswerResult>;

/** The longest message `catty send` types. */
export const SEND_TEXT_MAX = 16 * 1024;

/** A message typed into the program and submitted (`catty send`): text without control characters. */
export const SendText = z.object({
  text: z
    .string()
    .min(1)
    .max(SEND_TEXT_MAX)
    .refine((t) => !/[\x00-\x08\x0a-\x1f\x7f\x80-\x9f]/.test(t), "the text must be one line without control characters"),
});
export type SendText = z.infer<typeof SendText>;
