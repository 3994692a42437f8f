/**
 * Provider machine handles: what a provider returns when it starts a session's machine, stored
 * with the session and handed back to the provider to check on or destroy it. Parsed when read
 * back from the database, so a handle from another provider or a damaged row is refused.
 */
import { z } from "zod";

export const LocalMachine = z.object({
  provider: z.literal("local"),
  /** The agent's process id on the server's host. */
  pid: z.number().int().min(1),
  /** The session's directory (workspace, agent state, log). */
  dir: z.string().min(1),
});
export type LocalMachine = z.infer<typeof LocalMachine>;

export const DockerMachine = z.object({
  provider: z.literal("docker"),
  /** The container's id. */
  id: z.string().regex(/^[0-9a-f]{12,64}$/),
  /** Its name (`catty-<label>-…`), for operators reading `docker ps`. */
  name: z.string().min(1),
});
export type DockerMachine = z.infer<typeof DockerMachine>;

export const FlyMachine = z.object({
  provider: z.literal("fly"),
  /** The Fly app the Machine belongs to. */
  app: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  /** The Machine's id. */
  id: z.string().regex(/^[0-9a-z]{8,32}$/),
  /** The Fly region it was created in (`iad`, `fra`, …). */
  region: z.string().regex(/^[a-z]{3}$/),
});
export type FlyMachine = z.infer<typeof FlyMachine>;

/** DNS-1123 names, as Kubernetes takes them. */
const KubeName = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);

export const KubernetesMachine = z.object({
  provider: z.literal("kubernetes"),
  namespace: KubeName,
  /** The Pod's name (`catty-<label>-…`). */
  name: KubeName,
});
export type KubernetesMachine = z.infer<typeof KubernetesMachine>;

export const MachineHandle = z.discriminatedUnion("provider", [LocalMachine, DockerMachine, FlyMachine, KubernetesMachine]);
export type MachineHandle = z.infer<typeof MachineHandle>;
