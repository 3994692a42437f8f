/**
 * Machine providers: where a session's `catty-agent` runs. The server asks a provider to start a
 * machine for a session and to destroy it; the agent then dials the server by itself. A provider
 * writes the agent's environment with `encodeAgentEnv` (src/protocol/agent-env.ts), so every
 * provider hands the agent exactly what it reads.
 */
import type { MachineHandle } from "../../src/protocol/index.ts";
import type { Region } from "../regions.ts";

export interface MachineSpec {
  label: string;
  /** Session-scoped token the agent authenticates with. */
  agentToken: string;
  /** URL the agent dials (`…/v1/agent/connect` is appended). */
  serverUrl: string;
  /** Empty: the default program. */
  command: string[];
  cols: number;
  rows: number;
  /** The session's idle timeout: an agent that cannot reach the server for longer gives up. */
  idleTimeoutMs: number;
  /** One of the provider's regions. */
  region: Region;
}

export interface Provider {
  readonly name: string;
  /** Where it can run sessions; the first is the default. */
  readonly regions: readonly Region[];
  /** Whether a session's program is isolated from the host (false: it runs as the server's user). */
  readonly isolated: boolean;
  /** Starts the machine; resolves to a handle stored with the session. */
  start(spec: MachineSpec): Promise<MachineHandle>;
  /** Whether the machine behind a handle still exists. */
  isAlive(machine: MachineHandle): Promise<boolean>;
  /** Destroys the machine (the agent normally exits by itself first). */
  destroy(machine: MachineHandle): Promise<void>;
  /** The session ended: frees what its machine held beside its processes (the local sandbox's cgroups). */
  release?(machine: MachineHandle): Promise<void>;
  /** Why a machine that is not alive went away, in words for the session's end reason. */
  whyGone?(machine: MachineHandle): Promise<string | null>;
  /**
   * Called when the server starts (by one replica: the holder of the duties lease), with the
   * machines and labels of the sessions still live: removes machines of this server that no
   * session owns (a container left behind). A machine labelled with a live session is kept even
   * when its handle is not stored yet (another replica is starting it).
   */
  reconcile?(live: MachineHandle[], liveLabels: ReadonlySet<string>): Promise<void>;
}
