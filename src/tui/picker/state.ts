/**
 * The session picker's state, as a pure reducer: the sessions, the cursor (over the filtered
 * list), the filter, a stop waiting for its y/n, and a message line. The hooks and the view build
 * on it; tests drive it directly.
 */
import type { Session } from "../../protocol/index.ts";

export const PAGE_SIZE = 10;

export interface PickerState {
  sessions: Session[];
  /** Index into `visible(state)`. */
  cursor: number;
  filter: string;
  /** `/` was pressed: keys edit the filter until Enter or Esc. */
  filtering: boolean;
  /** The label a stop waits to be confirmed for (y/n). */
  confirmStop: string | null;
  message: string | null;
}

export type PickerAction =
  | { type: "sessions"; sessions: Session[] }
  | { type: "move"; by: number }
  | { type: "page"; by: number }
  | { type: "filter-start" }
  | { type: "filter-type"; text: string }
  | { type: "filter-backspace" }
  | { type: "filter-end"; keep: boolean }
  | { type: "confirm-stop"; label: string }
  | { type: "confirm-cancel" }
  | { type: "message"; text: string | null };

export function initialState(sessions: Session[]): PickerState {
  return { sessions, cursor: 0, filter: "", filtering: false, confirmStop: null, message: null };
}

/** The sessions the filter lets through (labels containing it), in the list's order. */
export function visible(state: PickerState): Session[] {
  const f = state.filter.trim().toLowerCase();
  return f ? state.sessions.filter((s) => s.label.includes(f)) : state.sessions;
}

/** The session under the cursor, if any. */
export function current(state: PickerState): Session | null {
  return visible(state)[state.cursor] ?? null;
}

export function pageOf(state: PickerState): { page: number; pages: number; rows: Session[] } {
  const all = visible(state);
  const pages = Math.max(1, Math.ceil(all.length / PAGE_SIZE));
  const page = Math.floor(state.cursor / PAGE_SIZE);
  return { page, pages, rows: all.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE) };
}

const clamp = (n: number, max: number): number => Math.max(0, Math.min(n, Math.max(0, max - 1)));

export function pickerReducer(state: PickerState, action: PickerAction): PickerState {
  switch (action.type) {
    case "sessions": {
      // The cursor stays on the same session when the list changes under it.
      const label = current(state)?.label;
      const next = { ...state, sessions: action.sessions };
      const at = label ? visible(next).findIndex((s) => s.label === label) : -1;
      return { ...next, cursor: at >= 0 ? at : clamp(state.cursor, visible(next).length) };
    }
    case "move":
      return { ...state, cursor: clamp(state.cursor + action.by, visible(state).length), message: null };
    case "page": {
      const n = visible(state).length;
      const page = Math.floor(state.cursor / PAGE_SIZE) + action.by;
      const pages = Math.max(1, Math.ceil(n / PAGE_SIZE));
      if (page < 0 || page >= pages) return state;
      return { ...state, cursor: clamp(page * PAGE_SIZE, n), message: null };
    }
    case "filter-start":
      return { ...state, filtering: true, message: null };
    case "filter-type":
      return { ...state, filter: state.filter + action.text, cursor: 0 };
    case "filter-backspace":
      return { ...state, filter: state.filter.slice(0, -1), cursor: 0 };
    case "filter-end":
      return { ...state, filtering: false, ...(action.keep ? {} : { filter: "", cursor: 0 }) };
    case "confirm-stop":
      return { ...state, confirmStop: action.label, message: null };
    case "confirm-cancel":
      return { ...state, confirmStop: null };
    case "message":
      return { ...state, message: action.text };
  }
}
