/**
 * Machine providers: where a session's `catty-agent` runs. The server asks a provider to start a
 * machine for a session and to destroy it; the agent then dials the server by itself.
 */
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
}

export interface Provider {
  readonly name: string;
  readonly region: string;
  /** Starts the machine; resolves to a handle stored with the session. */
  start(spec: MachineSpec): Promise<Record<string, unknown>>;
  /** Whether the machine behind a handle still exists. */
  isAlive(machine: Record<string, unknown>): Promise<boolean>;
  /** Destroys the machine (the agent normally exits by itself first). */
  destroy(machine: Record<string, unknown>): Promise<void>;
}
