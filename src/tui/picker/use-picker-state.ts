/** The picker's state hook: the reducer, fed with each new list of sessions the command passes in. */
import { useEffect, useReducer } from "react";
import type { Session } from "../../protocol/index.ts";
import { initialState, pickerReducer, type PickerAction, type PickerState } from "./state.ts";

export function usePickerState(sessions: Session[], message: string | null): [PickerState, (a: PickerAction) => void] {
  const [state, dispatch] = useReducer(pickerReducer, sessions, initialState);
  useEffect(() => dispatch({ type: "sessions", sessions }), [sessions]);
  useEffect(() => dispatch({ type: "message", text: message }), [message]);
  return [state, dispatch];
}
