/**
 * Session shapes of the HTTP API (`/v1/sessions`), shared by server, CLI and dashboard.
 */
import { z } from "zod";

/** `brave-tiger-1234`: two lowercase words and four digits. Anything else is rejected at the edge. */
export const Label = z.string().regex(/^[a-z]{2,16}-[a-z]{2,16}-\d{4}$/, "not a session label");
export type Label = z.infer<typeof Label>;

export const SessionStatus = z.enum(["starting", "running", "stopping", "stopped", "failed", "timed_out"]);
export type SessionStatus = z.infer<typeof SessionStatus>;

export const Session = z.object({
  label: Label,
  status: SessionStatus,
  region: z.string(),
  command: z.array(z.string()),
  createdAt: z.string(),
  endedAt: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  endReason: z.string().nullable(),
});
export type Session = z.infer<typeof Session>;

const Dim = z.number().int().min(1).max(1000);

/** Body of `POST /v1/sessions`. An empty `command` means the default (Claude Code or a shell). */
export const CreateSession = z.object({
  command: z.array(z.string().max(4096)).max(256).default([]),
  cols: Dim.default(80),
  rows: Dim.default(24),
});
export type CreateSession = z.input<typeof CreateSession>;

export const isLive = (s: SessionStatus): boolean => s === "starting" || s === "running" || s === "stopping";
