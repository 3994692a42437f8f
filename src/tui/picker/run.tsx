/**
 * Runs the picker on the terminal for a command: the command gives how to load and stop sessions;
 * the user's choice comes back once the picker is gone from the screen.
 */
import { render } from "ink";
import { useCallback, useState } from "react";
import type { Session } from "../../protocol/index.ts";
import { SessionPicker } from "./SessionPicker.tsx";

export type PickerChoice =
  | { kind: "connect"; session: Session; view: boolean }
  | { kind: "download"; session: Session }
  | { kind: "quit"; interrupted: boolean };

export interface PickerIo {
  load(): Promise<Session[]>;
  stop(label: string): Promise<void>;
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export async function runPicker(io: PickerIo): Promise<PickerChoice> {
  const first = await io.load();
  return new Promise<PickerChoice>((resolve) => {
    let finished = false;
    function App() {
      const [sessions, setSessions] = useState(first);
      const [message, setMessage] = useState<string | null>(null);
      const refresh = useCallback(() => {
        io.load().then(setSessions, (err: unknown) => setMessage(`Could not refresh: ${messageOf(err)}`));
      }, []);
      return (
        <SessionPicker
          sessions={sessions}
          message={message}
          onRefresh={refresh}
          onSelect={(session, view) => done({ kind: "connect", session, view })}
          onDownload={(session) => done({ kind: "download", session })}
          onCancel={(interrupted) => done({ kind: "quit", interrupted })}
          onStop={(session) => {
            setMessage(`Stopping ${session.label} (saving its workspace)…`);
            io.stop(session.label).then(
              () => {
                setMessage(`Stopped ${session.label}.`);
                refresh();
              },
              (err: unknown) => setMessage(`Could not stop ${session.label}: ${messageOf(err)}`),
            );
          }}
        />
      );
    }
    const app = render(<App />, { exitOnCtrlC: false, patchConsole: false });
    // Asked for before the unmount: Ink settles only a promise that already exists.
    const exited = app.waitUntilExit();
    function done(choice: PickerChoice): void {
      if (finished) return;
      finished = true;
      app.clear();
      app.unmount();
      void exited.then(() => resolve(choice));
    }
  });
}
