/** The CLI's commands, each loaded when it runs (`catty --help` and completion load them all). */
import type { CommandDef } from "citty";

// citty's CommandDef is generic over each command's own arguments.
type AnyCommand = CommandDef<any>;
const load = (p: Promise<{ default: AnyCommand }>): Promise<AnyCommand> => p.then((m) => m.default);

export const COMMANDS: Record<string, () => Promise<AnyCommand>> = {
  new: () => load(import("./new.ts")),
  connect: () => load(import("./connect.ts")),
  list: () => load(import("./list.ts")),
  stop: () => load(import("./stop.ts")),
  inbox: () => load(import("./inbox.ts")),
  approve: () => load(import("./approve.ts")),
  deny: () => load(import("./deny.ts")),
  send: () => load(import("./send.ts")),
  forward: () => load(import("./forward.ts")),
  download: () => load(import("./download.ts")),
  saves: () => load(import("./saves.ts")),
  sync: () => load(import("./sync.ts")),
  login: () => load(import("./login.ts")),
  logout: () => load(import("./logout.ts")),
  secrets: () => load(import("./secrets.ts")),
  usage: () => load(import("./usage.ts")),
  regions: () => load(import("./regions.ts")),
  completion: () => load(import("./completion.ts")),
  update: () => load(import("./update.ts")),
  version: () => load(import("./version.ts")),
};
