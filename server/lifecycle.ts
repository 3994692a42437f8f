/**
 * The lifecycle of running sessions: one `LiveSession` per session that is starting, running or
 * stopping, holding everything that happens to it over time — the agent coming and going (and
 * the check that its machine still exists), input and output keeping it from idling, its maximum
 * duration, and its ending: a stop, a timeout or a failure, recorded once.
 *
 * An ending the server asks for (a user's stop, a timeout) is kept in the session's row
 * (`ending`) until the program has exited, so a restarted server finishes it the same way: it
 * asks the agent to stop again when it re-dials, and records the status and reason first asked for.
 *
 * `Lifecycle` owns the live sessions and the periodic work (limits, sweeps); it receives the
 * relay's events (`RelayEvents`) and tells the relay what to send (`RelayControl`).
 *
 * With several replicas (replicas.ts), a session's lifecycle is run by its relay replica, the one
 * its agent said hello to (recorded in the row): that replica alone knows when input and output
 * last went through. A session whose relay replica is not alive (it died; or the agent has not
 * dialled yet) is looked after by the holder of the duties lease, as is the storage sweep. A stop
 * asked of another replica is passed to the relay replica; an end is recorded once
 * (`Store.endSession`), and the other replicas are told so their waiting clients hear of it.
 */
import { formatDuration } from "../src/lib/duration.ts";
import type { Log } from "../src/lib/log.ts";
import { CattyError, isLive, type Attention, type ListeningPort, type MachineHandle, type ServerToClient, type SessionStatus } from "../src/protocol/index.ts";
import type { SessionTimeouts } from "./config.ts";
import type { Provider } from "./providers/types.ts";
import { DUTIES_LEASE, type Replicas } from "./replicas.ts";
import type { ReplicaRow } from "./store/types.ts";
import type { AgentControl, AgentWelcome, ExitReport, RelayEvents } from "./relay.ts";
import type { Region } from "./regions.ts";
import type { Saves } from "./saves.ts";
import type { PendingEnding, SessionPatch, SessionRow, Store } from "./store/types.ts";

/** What the lifecycle asks of the relay. */
export interface RelayControl {
  /** Asks the session's agent to end the program. False when no agent is connected. */
  stop(sessionId: string, reason: string): boolean;
  agentConnected(sessionId: string): boolean;
  /** Tells every client of a session that ended without its agent, and closes their links. */
  endClients(sessionId: string, msg: ServerToClient): void;
  /** Sessions with clients here but no agent link. */
  waitingSessions(): string[];
  /** Another replica relays the session: its clients here dial again (and land there). */
  moved(sessionId: string): void;
}

export interface LifecycleDeps {
  store: Store;
  provider: Provider;
  saves: Saves;
  log: Log;
  /** How long a session may be without its agent, while its machine lives, before it fails. */
  agentLostMs: number;
  /** How long an ending waits for the program's exit before the machine is destroyed. */
  stopTimeoutMs: number;
  timeouts: SessionTimeouts;
  /** How often saves and uploads nobody will use are swept (see `Saves.sweep`). */
  sweepMs: number;
  /**
   * The program's Claude API access (base URL, a new proxy token of the session's own, whose hash
   * it stores); null when the server gives none.
   */
  apiEnv?(row: SessionRow): Promise<Record<string, string> | null>;
  /** Sessions ended here are counted (see metrics.ts). */
  onEnded?(status: SessionStatus): void;
  /** The replicas sharing the store (a solo one on SQLite). */
  replicas: Replicas;
}

/** How stale the activity recorded in a session's row may get (it is written at most this often, checked each tick). */
const ACTIVITY_RECORD_MS = 15_000;

export class Lifecycle implements RelayEvents {
  private readonly live = new Map<string, LiveSession>();
  private relay: RelayControl | null = null;
  private ticker: Timer | null = null;
  private sweeper: Timer | null = null;
  /** The storage sweep under way, if any. */
  private sweeping: Promise<unknown> | null = null;
  private closed = false;
  private readonly startedAt = Date.now();
  /** Whether this replica held the duties lease at the last check. */
  private duties = false;

  constructor(readonly deps: LifecycleDeps) {}

  /** Wires the relay (built after the lifecycle, since each reports to the other). */
  connect(relay: RelayControl): void {
    this.relay = relay;
  }

  get relayControl(): RelayControl {
    if (!this.relay) throw new Error("the lifecycle is not connected to a relay");
    return this.relay;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Takes over the sessions a previous server process left running (their machine gone: failed;
   * an ending under way: resumed), then starts the periodic checks.
   */
  async start(): Promise<void> {
    const { store, provider, log, saves, replicas } = this.deps;
    this.duties = await replicas.lease(DUTIES_LEASE);
    const live = await store.liveSessions();
    for (const row of live) {
      if (!(await this.owns(row))) continue;
      const alive = row.machine ? await provider.isAlive(row.machine) : false;
      const s = this.session(row);
      if (!alive) await s.fail(await this.goneReason(row.machine, "the session machine was gone when the server started"));
      else s.watchAgent();
    }
    if (provider.reconcile && this.duties) {
      const machines = live.flatMap((row) => (row.machine ? [row.machine] : []));
      await provider
        .reconcile(machines, new Set(live.map((row) => row.label)))
        .catch((err: unknown) => log.warn("could not reconcile session machines", { err }));
    }
    await this.tick();
    if (this.closed) return;
    const report = (what: string) => (err: unknown) => log.error(`${what} failed`, { err });
    this.ticker = setInterval(() => void this.tick().catch(report("session limit check")), this.deps.timeouts.tickMs);
    const sweep = (): void => {
      if (!this.duties || this.sweeping || this.closed) return;
      this.sweeping = saves
        .sweep()
        .catch(report("storage sweep"))
        .finally(() => (this.sweeping = null));
    };
    sweep();
    this.sweeper = setInterval(sweep, this.deps.sweepMs);
  }

  /** The live replica other than this one that relays the session, if there is one. */
  async relayElsewhere(row: Pick<SessionRow, "relayReplica">): Promise<ReplicaRow | null> {
    const { replicas } = this.deps;
    if (row.relayReplica === null || row.relayReplica === replicas.id) return null;
    return replicas.alive(row.relayReplica);
  }

  /** Whether this replica runs the session's lifecycle: it relays it, or nobody alive does and it has the duties. */
  private async owns(row: SessionRow): Promise<boolean> {
    if (row.relayReplica === this.deps.replicas.id) return true;
    return this.duties && (await this.relayElsewhere(row)) === null;
  }

  /** Stops looking after a session another replica runs (keeping what it may still hand over). */
  private letGo(id: string): void {
    const s = this.live.get(id);
    if (!s || s.ending || s.programEnv !== null) return;
    s.dispose();
    this.live.delete(id);
  }

  /** The end reason of a session whose machine is not alive, with the provider's account when it has one. */
  async goneReason(machine: MachineHandle | null, fallback: string): Promise<string> {
    if (!machine || !this.deps.provider.whyGone) return fallback;
    const why = await this.deps.provider.whyGone(machine).catch(() => null);
    return why ? `${fallback}: ${why}` : fallback;
  }

  /** Resolves once a storage sweep under way has finished (so the database may be closed). */
  async settled(): Promise<void> {
    await this.sweeping;
  }

  close(): void {
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    if (this.sweeper) clearInterval(this.sweeper);
    for (const s of this.live.values()) s.dispose();
    this.live.clear();
  }

  /**
   * The live session of `row`, created on first use. Its idle time counts from the activity last
   * recorded (by this replica or the one before), else from its creation or this process's start.
   */
  session(row: Pick<SessionRow, "id" | "label" | "createdAt" | "lastActivityAt">): LiveSession {
    let s = this.live.get(row.id);
    if (!s) {
      const recorded = row.lastActivityAt ? Date.parse(row.lastActivityAt) : NaN;
      const since = Number.isFinite(recorded) ? Math.max(recorded, Date.parse(row.createdAt)) : Math.max(Date.parse(row.createdAt), this.startedAt);
      s = new LiveSession(this, row.id, row.label, since);
      s.recordedActivity = since;
      this.live.set(row.id, s);
    }
    return s;
  }

  /** Called by a LiveSession once its ending is recorded. */
  forget(id: string): void {
    this.listening.delete(id);
    this.live.delete(id);
  }

  /**
   * Starts the machine of a session just inserted; its agent is then expected to dial in. A
   * machine that cannot start fails the session (and throws `unavailable`).
   */
  async launch(row: SessionRow, agent: { token: string; serverUrl: string }, programEnv: Record<string, string> | null = null): Promise<SessionRow> {
    const { provider, store, log } = this.deps;
    // Held in memory only, for the agent's welcome (see agentHello).
    this.session(row).programEnv = programEnv;
    let machine;
    try {
      machine = await provider.start({
        label: row.label,
        agentToken: agent.token,
        serverUrl: agent.serverUrl,
        command: row.command,
        cols: row.cols,
        rows: row.rows,
        idleTimeoutMs: row.idleTimeoutMs,
        // A region the server no longer has (its configuration changed) runs in the default one.
        region: provider.regions.find((r) => r.id === row.region) ?? (provider.regions[0] as Region),
      });
    } catch (err) {
      const why = (err as Error).message;
      await this.session(row).fail(`could not start the session machine: ${why}`);
      throw new CattyError("unavailable", `Session ${row.label} could not start: ${why}`);
    }
    // This replica keeps the program's environment until the agent has it: it is the session's relay replica until the agent dials another.
    const updated = (await store.updateSession(row.id, { machine, relayReplica: this.deps.replicas.id })) ?? row;
    log.info("session created", { label: row.label });
    this.session(row).watchAgent();
    return updated;
  }

  /**
   * `catty stop`: ends the session gracefully (or as it was already being ended), on its relay
   * replica; `here`: on this one (asked by another replica, so never passed on again).
   */
  async stop(row: SessionRow, opts: { here?: boolean } = {}): Promise<SessionRow | null> {
    const relay = opts.here ? null : await this.relayElsewhere(row);
    if (!relay) return this.session(row).end({ status: "stopped", reason: "stopped by user" });
    const res = await this.deps.replicas.call(relay, "POST", `/v1/internal/sessions/${row.id}/stop`, undefined, { timeoutMs: this.deps.stopTimeoutMs + 15_000, retries: 2 });
    await res.body?.cancel();
    if (!res.ok) throw new CattyError("unavailable", `The replica that relays session ${row.label} could not stop it (HTTP ${res.status}).`, "Try again.");
    return this.deps.store.sessionById(row.id);
  }

  /** Checks every live session's limits, and resumes endings a previous process started. */
  async tick(): Promise<void> {
    const now = Date.now();
    this.duties = await this.deps.replicas.lease(DUTIES_LEASE);
    // Clients waiting here for an agent that dialled another replica (a word about it was missed).
    // A solo replica has no other: nothing to look up.
    for (const id of this.deps.replicas.solo ? [] : this.relayControl.waitingSessions()) {
      if (!(await this.servedElsewhere(id))) continue;
      this.deps.log.debug("clients waiting here for a session relayed elsewhere: told to dial again", { session: id });
      this.relayControl.moved(id);
    }
    for (const row of await this.deps.store.liveSessions()) {
      if (this.closed) return;
      if (!(await this.owns(row))) {
        this.letGo(row.id);
        continue;
      }
      const s = this.session(row);
      if (s.ending) continue;
      // Taken over from a replica that died (or never had its agent): its machine is watched here.
      if (!s.watching && !this.relayControl.agentConnected(row.id)) s.watchAgent();
      if (row.ending) {
        void s.end(row.ending, { agentMayReturn: true });
        continue;
      }
      if (row.expiresAt && Date.parse(row.expiresAt) <= now) {
        const took = formatDuration(Date.parse(row.expiresAt) - Date.parse(row.createdAt));
        void s.end({ status: "timed_out", reason: `reached its maximum duration of ${took}` });
        continue;
      }
      if (s.lastActivity !== s.recordedActivity && now - s.recordedAt >= Math.min(ACTIVITY_RECORD_MS, 3 * this.deps.timeouts.tickMs)) {
        s.recordedActivity = s.lastActivity;
        s.recordedAt = now;
        await this.deps.store.updateSession(row.id, { lastActivityAt: new Date(s.lastActivity).toISOString() });
      }
      if (now - s.lastActivity >= row.idleTimeoutMs) {
        void s.end({ status: "timed_out", reason: `idle for ${formatDuration(row.idleTimeoutMs)} (no input or output)` });
      }
    }
  }

  // ── relay events ────────────────────────────────────────────────────────────────────────────

  async agentHello(sessionId: string, programStarted: boolean): Promise<AgentWelcome> {
    const { store, saves } = this.deps;
    const row = await store.sessionById(sessionId);
    if (!row) return { restore: null, stop: null, env: null };
    const live = isLive(row.status) ? this.session(row) : null;
    live?.agentBack();
    if (live && row.relayReplica !== this.deps.replicas.id) await this.takeOver(row, live, programStarted);
    if (row.status === "starting") await store.updateSession(sessionId, { status: "running" });
    await saves.agentReconnected(sessionId);
    // The program's environment goes to the agent until its program runs, then is forgotten. Its
    // API token is made once per server process (a restarted server makes a new one).
    let env: Record<string, string> | null = null;
    if (live && !programStarted) {
      // A session with the user's own key (catty new --own-api-key) gets no proxy access.
      if (!live.programEnv?.ANTHROPIC_API_KEY) live.apiEnv ??= (await this.deps.apiEnv?.(row)) ?? null;
      env = { ...(live.apiEnv ?? {}), ...(live.programEnv ?? {}) };
    }
    if (live && programStarted) {
      live.programEnv = null;
      live.apiEnv = null;
    }
    return { restore: await saves.restoreFor(row), stop: row.ending?.reason ?? null, env };
  }

  /**
   * The agent dialled this replica: it becomes the session's relay replica. The program's
   * environment, if the agent still needs it, is asked of the replica that had it (it is kept in
   * that replica's memory only); then every other replica is told, so that their clients of the
   * session dial again and land here.
   */
  private async takeOver(row: SessionRow, live: LiveSession, programStarted: boolean): Promise<void> {
    const { store, replicas, log } = this.deps;
    const before = await this.relayElsewhere(row);
    if (before && !programStarted && live.programEnv === null) {
      live.programEnv = await replicas
        .call(before, "POST", `/v1/internal/sessions/${row.id}/handover`, undefined, { retries: 2 })
        .then(async (res) => (res.ok ? ((await res.json()) as { env: Record<string, string> | null }).env : null))
        .catch((err: unknown) => {
          log.warn("could not get the program's environment from the replica that started the session", { label: row.label, err });
          return null;
        });
    }
    await store.updateSession(row.id, { relayReplica: replicas.id });
    log.debug("relaying the session here now", { label: row.label, before: row.relayReplica, env: live.programEnv !== null });
    replicas.broadcast(`/v1/internal/sessions/${row.id}/moved`, {});
  }

  /**
   * Another replica asks for the program's environment this one keeps (see `takeOver`); it is
   * forgotten here once that replica says it relays the session (`movedAway`).
   */
  handOver(sessionId: string): Record<string, string> | null {
    return this.live.get(sessionId)?.programEnv ?? null;
  }

  /** Another replica relays the session now. */
  movedAway(sessionId: string): void {
    const s = this.live.get(sessionId);
    if (s) s.programEnv = null;
    this.letGo(sessionId);
  }

  async servedElsewhere(sessionId: string): Promise<boolean> {
    const row = await this.deps.store.sessionById(sessionId);
    return row !== null && isLive(row.status) && (await this.relayElsewhere(row)) !== null;
  }

  async agentControl(sessionId: string, msg: AgentControl) {
    const row = await this.deps.store.sessionById(sessionId);
    if (!row) return null;
    return this.deps.saves.control(row, msg, (reason) => this.session(row).fail(reason));
  }

  async exit(sessionId: string, exit: ExitReport): Promise<{ status: SessionStatus; reason: string | null }> {
    const row = await this.deps.store.sessionById(sessionId);
    if (!row) return { status: "stopped", reason: exit.reason };
    if (!isLive(row.status)) return { status: row.status, reason: row.endReason };
    return this.session(row).exited(row, exit);
  }

  agentGone(sessionId: string): void {
    void this.deps.saves.agentReconnected(sessionId).catch((err: unknown) => this.deps.log.warn("could not drop a save in flight", { err }));
    this.live.get(sessionId)?.watchAgent();
  }

  attention(sessionId: string, attention: Attention): void {
    void this.deps.store
      .updateSession(sessionId, { attention })
      .catch((err: unknown) => this.deps.log.warn("could not store a session's attention state", { err }));
  }

  activity(sessionId: string): void {
    const s = this.live.get(sessionId);
    if (s) s.lastActivity = Date.now();
  }

  /** The ports a live session's programs listen on, as its agent last said (held by its relay replica). */
  private readonly listening = new Map<string, ListeningPort[]>();

  ports(sessionId: string, ports: ListeningPort[]): void {
    if (ports.length === 0) this.listening.delete(sessionId);
    else this.listening.set(sessionId, ports);
  }

  listeningPorts(row: Pick<SessionRow, "id" | "status">): ListeningPort[] {
    return isLive(row.status) ? (this.listening.get(row.id) ?? []) : [];
  }

  /** When input or output last went through a live session (ms): as this replica saw it, else as recorded. */
  lastActivity(row: Pick<SessionRow, "id" | "lastActivityAt">): number | null {
    const here = this.live.get(row.id)?.lastActivity;
    if (here !== undefined) return here;
    const recorded = row.lastActivityAt ? Date.parse(row.lastActivityAt) : NaN;
    return Number.isFinite(recorded) ? recorded : null;
  }
}

/** One session that is starting, running or stopping. */
export class LiveSession {
  /** The ending under way in this process, if any. */
  ending: Promise<SessionRow | null> | null = null;
  private lostTimer: Timer | null = null;
  private onEnded: Array<() => void> = [];
  /** Disposed: ended, or the server is closing. */
  private done = false;
  /** The end was recorded (or is being recorded) by this process. */
  private recorded = false;
  /**
   * The program's extra environment (the user's secrets, API access) until the agent's program
   * runs: in this process's memory only. A server restarted before then has lost it.
   */
  programEnv: Record<string, string> | null = null;
  /** The program's Claude API access, made at the first welcome (see `LifecycleDeps.apiEnv`). */
  apiEnv: Record<string, string> | null = null;
  /** The last activity stored in the row, and when it was stored (see `Lifecycle.tick`). */
  recordedActivity = 0;
  recordedAt = 0;

  constructor(
    private readonly lifecycle: Lifecycle,
    readonly id: string,
    readonly label: string,
    /** Last input or output seen by this process (its start, or the session's creation). */
    public lastActivity: number,
  ) {}

  private get deps(): LifecycleDeps {
    return this.lifecycle.deps;
  }

  /** Whether the agent's machine is being watched (see `watchAgent`). */
  get watching(): boolean {
    return this.lostTimer !== null || this.checking;
  }
  private checking = false;
  private watchGeneration = 0;

  /** The agent is connected: no need to look for its machine. */
  agentBack(): void {
    this.clearLostTimer();
  }

  /**
   * The agent is away (not yet connected, or dropped). While it stays away, its machine is
   * checked now and then; once the machine is gone the session has failed.
   */
  watchAgent(): void {
    this.clearLostTimer();
    if (this.lifecycle.isClosed || this.done) return;
    const { store, provider, log, agentLostMs } = this.deps;
    // A check under way counts as watching; a newer `watchAgent` supersedes it (its timer is not kept).
    const generation = ++this.watchGeneration;
    const check = async (): Promise<void> => {
      this.lostTimer = null;
      if (this.lifecycle.isClosed || this.done || generation !== this.watchGeneration) return;
      this.checking = true;
      try {
        await checkOnce();
      } finally {
        this.checking = false;
      }
    };
    const checkOnce = async (): Promise<void> => {
      const row = await store.sessionById(this.id);
      if (!row || !isLive(row.status) || this.lifecycle.relayControl.agentConnected(this.id)) return;
      if (await this.lifecycle.relayElsewhere(row)) return;
      const alive = row.machine ? await provider.isAlive(row.machine) : false;
      if (alive) {
        if (generation === this.watchGeneration && !this.done) this.lostTimer = setTimeout(run, agentLostMs);
        return;
      }
      await this.fail(await this.lifecycle.goneReason(row.machine, "the session machine went away (crash or kill)"));
    };
    const run = (): void => void check().catch((err: unknown) => log.error("lost-agent check failed", { label: this.label, err }));
    this.lostTimer = setTimeout(run, Math.min(agentLostMs, 5_000));
  }

  /**
   * Ends the session gracefully: the agent stops the program and makes the final save; the exit
   * is recorded with `asked` (or with the ending already under way, which wins). If the program
   * has not exited after the stop timeout, the machine is destroyed. Without a connected agent the
   * machine is destroyed at once, unless `agentMayReturn` (a restarted server: the agent re-dials
   * and is asked to stop then).
   */
  end(asked: PendingEnding, opts: { agentMayReturn?: boolean } = {}): Promise<SessionRow | null> {
    this.ending ??= this.runEnding(asked, opts.agentMayReturn ?? false).finally(() => {
      this.ending = null;
    });
    return this.ending;
  }

  private async runEnding(asked: PendingEnding, agentMayReturn: boolean): Promise<SessionRow | null> {
    const { store, provider, log, stopTimeoutMs } = this.deps;
    let row = await store.sessionById(this.id);
    if (!row || !isLive(row.status)) return row;
    const ending = row.ending ?? asked;
    if (!row.ending || row.status !== "stopping") {
      log.info("ending session", { label: this.label, reason: ending.reason });
      row = (await store.updateSession(this.id, { status: "stopping", ending })) ?? row;
    }
    const ended = new Promise<boolean>((resolve) => {
      if (this.done) return resolve(true);
      this.onEnded.push(() => resolve(true));
    });
    const asking = this.lifecycle.relayControl.stop(this.id, ending.reason);
    if (asking || agentMayReturn) {
      let timer: Timer | undefined;
      const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), stopTimeoutMs)));
      const exited = await Promise.race([ended, timeout]);
      clearTimeout(timer);
      if (exited) return store.sessionById(this.id);
    }
    const current = await store.sessionById(this.id);
    if (!current || !isLive(current.status) || this.lifecycle.isClosed) return current;
    log.warn("the session did not stop in time; destroying its machine", { label: this.label });
    if (current.machine) await provider.destroy(current.machine);
    const recorded = await this.record(ending.status, {
      endReason: `${ending.reason} (machine destroyed)`,
      finalSave: "failed: the session did not stop in time",
    });
    if (!recorded.first) return recorded.row;
    this.lifecycle.relayControl.endClients(this.id, { type: "exit", code: 129, status: recorded.row.status, reason: recorded.row.endReason });
    return recorded.row;
  }

  /** The program exited (the agent reported it): recorded with the ending asked for, if any. */
  async exited(row: SessionRow, exit: ExitReport): Promise<{ status: SessionStatus; reason: string | null }> {
    const asked = row.ending;
    const reason =
      asked?.reason ?? exit.reason ?? (row.status === "stopping" ? "stopped by user" : `program exited with code ${exit.code}`);
    const { row: ended, first } = await this.record(asked?.status ?? "stopped", {
      exitCode: exit.code,
      endReason: reason,
      lastScreen: exit.screen,
      finalSave: exit.finalSave,
    });
    if (first) this.deps.log.info("session ended", { label: this.label, code: exit.code, reason });
    return { status: ended.status, reason: ended.endReason };
  }

  /** The session has failed (its machine is gone, its workspace could not be restored…). */
  async fail(reason: string): Promise<void> {
    const row = await this.deps.store.sessionById(this.id);
    if (!row || !isLive(row.status)) return;
    const { row: ended, first } = await this.record("failed", { endReason: reason });
    if (!first) return;
    this.deps.log.warn("session failed", { label: this.label, reason });
    this.lifecycle.relayControl.endClients(this.id, { type: "exit", code: 1, status: ended.status, reason });
  }

  /**
   * Records the end, once: whichever of exit, failure or destruction comes first is kept (`first`),
   * and a later one gets the row as recorded.
   */
  private async record(
    status: SessionStatus,
    patch: Pick<SessionPatch, "exitCode" | "endReason" | "lastScreen" | "finalSave">,
  ): Promise<{ row: SessionRow; first: boolean }> {
    const { store } = this.deps;
    let first = !this.recorded;
    this.recorded = true;
    let updated = first ? await store.endSession(this.id, { exitCode: null, ...patch, status, endedAt: new Date().toISOString(), ending: null }) : null;
    if (first && !updated) {
      // Another replica recorded it first.
      first = false;
      this.dispose();
      this.lifecycle.forget(this.id);
    }
    updated ??= await store.sessionById(this.id);
    if (first) {
      this.deps.replicas.broadcast(`/v1/internal/sessions/${this.id}/ended`, {});
      this.deps.onEnded?.(status);
      this.dispose();
      this.lifecycle.forget(this.id);
      const machine = updated?.machine;
      if (machine) {
        await this.deps.provider.release?.(machine).catch((err: unknown) => this.deps.log.warn("could not release the machine", { label: this.label, err }));
      }
    }
    if (!updated) throw new Error(`session ${this.label} vanished from the database`);
    return { row: updated, first };
  }

  /** Stops this session's timers and releases whoever waits for its end. */
  dispose(): void {
    this.done = true;
    this.clearLostTimer();
    for (const resolve of this.onEnded.splice(0)) resolve();
  }

  /** Stops watching: the timer goes, and a check under way does not arm another. */
  private clearLostTimer(): void {
    if (this.lostTimer) clearTimeout(this.lostTimer);
    this.lostTimer = null;
    this.watchGeneration++;
  }
}
