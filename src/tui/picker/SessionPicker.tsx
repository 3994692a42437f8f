/**
 * The session picker: the state hook, the input hook and the pure view, with callbacks out. It
 * never calls the API or exits the process; the command passes the sessions in and acts on the
 * callbacks. It asks for a refresh every 5 s by itself.
 */
import { useEffect, useState } from "react";
import type { Session } from "../../protocol/index.ts";
import { PickerView } from "./PickerView.tsx";
import { usePickerInput, type PickerCallbacks } from "./use-picker-input.ts";
import { usePickerState } from "./use-picker-state.ts";

export const REFRESH_MS = 5_000;

export interface SessionPickerProps extends PickerCallbacks {
  sessions: Session[];
  /** A line from the command (a stop under way, an error). */
  message?: string | null;
  /** The clock, for tests. */
  now?: () => number;
}

export function SessionPicker({ sessions, message = null, now = Date.now, ...cb }: SessionPickerProps) {
  const [state, dispatch] = usePickerState(sessions, message);
  usePickerInput(state, dispatch, cb);
  const [, tick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => {
      cb.onRefresh();
      tick((n) => n + 1);
    }, REFRESH_MS);
    return () => clearInterval(t);
  }, [cb.onRefresh]);
  return <PickerView state={state} now={now()} />;
}
