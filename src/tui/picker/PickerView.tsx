/** The picker's pure view: a page of sessions, the filter, a confirmation or message, and the keys. */
import { Box, Text } from "ink";
import type { Session } from "../../protocol/index.ts";
import { ago, attentionText, portsText } from "../../client/session-text.ts";
import { current, pageOf, type PickerState } from "./state.ts";

const STATUS_COLOR: Record<string, string> = { running: "green", starting: "yellow", stopping: "yellow", failed: "red" };

const cell = (text: string, width: number): string => (text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width));

function Row({ s, selected, now }: { s: Session; selected: boolean; now: number }) {
  const attention = attentionText(s, now);
  const latest = s.saves[0];
  return (
    <Box flexDirection="column">
      <Box>
        <Text color={selected ? "cyan" : undefined}>{selected ? "❯ " : "  "}</Text>
        <Text bold={selected}>{cell(s.label, 22)}</Text>
        <Text color={STATUS_COLOR[s.status] ?? "gray"}>{cell(`● ${s.status}`, 12)}</Text>
        {attention.startsWith("waiting") ? (
          <Text color="black" backgroundColor="yellow" bold>{cell(attention, 13)}</Text>
        ) : (
          <Text dimColor>{cell(attention, 13)}</Text>
        )}
        <Text> {cell(s.region, 10)}</Text>
        <Text dimColor>{cell(ago(s.createdAt, now), 10)}</Text>
        <Text dimColor>{cell(s.lastActivityAt ? ago(s.lastActivityAt, now) : "—", 10)}</Text>
        <Text dimColor>{latest ? ago(latest.createdAt, now) : "no save"}</Text>
      </Box>
      {/* Its listening ports, on a line of their own under it. */}
      {s.ports.length > 0 && <Text color="cyan" wrap="truncate">{"    ports "}{portsText(s)}</Text>}
    </Box>
  );
}

export function PickerView({ state, now }: { state: PickerState; now: number }) {
  const { page, pages, rows } = pageOf(state);
  const selected = current(state);
  if (state.sessions.length === 0) {
    return (
      <Box flexDirection="column">
        <Text>No sessions yet. Start one with <Text bold>catty new</Text> (this directory becomes its /workspace).</Text>
        <Text dimColor>q quit · r refresh</Text>
      </Box>
    );
  }
  return (
    <Box flexDirection="column">
      <Text dimColor>
        {"  "}
        {cell("LABEL", 22)}
        {cell("STATUS", 12)}
        {cell("PROGRAM", 13)} {cell("REGION", 10)}
        {cell("CREATED", 10)}
        {cell("ACTIVE", 10)}
        LATEST SAVE
      </Text>
      {rows.map((s) => <Row key={s.label} s={s} selected={s.label === selected?.label} now={now} />)}
      {rows.length === 0 && <Text dimColor>  No session matches “{state.filter}”.</Text>}
      <Text dimColor>
        {pages > 1 ? `page ${page + 1}/${pages} (←/→) · ` : ""}
        {state.filter && !state.filtering ? `filter “${state.filter}” (/ to change) · ` : ""}
        {state.sessions.length} session{state.sessions.length === 1 ? "" : "s"}
      </Text>
      {state.filtering ? (
        <Text>
          / <Text bold>{state.filter}</Text>
          <Text inverse> </Text> <Text dimColor>Enter keep · Esc clear</Text>
        </Text>
      ) : state.confirmStop ? (
        <Text color="red">Stop {state.confirmStop}? Its workspace is saved first. (y/n)</Text>
      ) : state.message ? (
        <Text>{state.message}</Text>
      ) : (
        <Text dimColor>↑↓/jk move · Enter connect · v view · s stop · d download · / filter · r refresh · q quit</Text>
      )}
    </Box>
  );
}
