/** The picker's input hook: keys become state changes or callbacks out; it calls nothing else. */
import { useInput } from "ink";
import { useRef } from "react";
import type { Session } from "../../protocol/index.ts";
import { current, pickerReducer, type PickerAction, type PickerState } from "./state.ts";

export interface PickerCallbacks {
  /** Enter (interactive) or `v` (viewer). */
  onSelect(session: Session, view: boolean): void;
  /** `s`, once confirmed with `y`. */
  onStop(session: Session): void;
  /** `d`: the latest save. */
  onDownload(session: Session): void;
  /** `r`, and every few seconds by itself. */
  onRefresh(): void;
  /** `q`, Esc or Ctrl+C. */
  onCancel(interrupted: boolean): void;
}

export function usePickerInput(rendered: PickerState, apply: (a: PickerAction) => void, cb: PickerCallbacks): void {
  // Keys can come faster than renders (a paste, a fast typist): each is read against the state the
  // keys before it made, kept here with the same reducer, not against the last render's.
  const latest = useRef(rendered);
  const seen = useRef(rendered);
  if (seen.current !== rendered) latest.current = seen.current = rendered;
  const dispatch = (a: PickerAction): void => {
    latest.current = pickerReducer(latest.current, a);
    apply(a);
  };
  useInput((input, key) => {
    const state = latest.current;
    if (key.ctrl && input === "c") return cb.onCancel(true);
    if (state.confirmStop) {
      const target = state.sessions.find((s) => s.label === state.confirmStop);
      dispatch({ type: "confirm-cancel" });
      if (input.toLowerCase() === "y" && target) cb.onStop(target);
      return;
    }
    if (state.filtering) {
      if (key.return) return dispatch({ type: "filter-end", keep: true });
      if (key.escape) return dispatch({ type: "filter-end", keep: false });
      if (key.backspace || key.delete) return dispatch({ type: "filter-backspace" });
      if (key.upArrow) return dispatch({ type: "move", by: -1 });
      if (key.downArrow) return dispatch({ type: "move", by: 1 });
      if (input && !key.ctrl && !key.meta) dispatch({ type: "filter-type", text: input });
      return;
    }
    const s = current(state);
    if (key.upArrow || input === "k") return dispatch({ type: "move", by: -1 });
    if (key.downArrow || input === "j") return dispatch({ type: "move", by: 1 });
    if (key.pageDown || key.rightArrow || input === "n") return dispatch({ type: "page", by: 1 });
    if (key.pageUp || key.leftArrow || input === "p") return dispatch({ type: "page", by: -1 });
    if (input === "/") return dispatch({ type: "filter-start" });
    if (input === "r") return cb.onRefresh();
    if (input === "q" || key.escape) return cb.onCancel(false);
    if (!s) return;
    if (key.return) return cb.onSelect(s, false);
    if (input === "v") return cb.onSelect(s, true);
    if (input === "d") return cb.onDownload(s);
    if (input === "s") {
      if (s.status === "running" || s.status === "starting") dispatch({ type: "confirm-stop", label: s.label });
      else dispatch({ type: "message", text: `${s.label} is ${s.status} already.` });
    }
  });
}
