/** @jsxImportSource preact */
/**
 * The dashboard, served by catty-server on its own port: sign in with a token (SignIn), the
 * sessions (Dashboard, a SessionRow each), a session's terminal (TerminalPage, with Chat), and
 * `/device`, where a signed-in user approves a `catty login --device` (DevicePage).
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { api } from "./api.ts";
import { Dashboard } from "./Dashboard.tsx";
import { DevicePage } from "./DevicePage.tsx";
import { SignIn } from "./SignIn.tsx";
import { TerminalPage } from "./TerminalPage.tsx";

function App() {
  const [user, setUser] = useState<string | null | undefined>(undefined);
  useEffect(() => {
    void api.me().then((me) => setUser(me?.user ?? null));
  }, []);
  if (user === undefined) return <p>Loading…</p>;
  if (user === null) return <SignIn onSignedIn={(u) => (location.pathname === "/" ? setUser(u) : location.reload())} />;
  const path = location.pathname;
  if (path.startsWith("/s/")) return <TerminalPage label={decodeURIComponent(path.slice(3))} />;
  if (path === "/device") return <DevicePage user={user} />;
  return <Dashboard user={user} />;
}

render(<App />, document.getElementById("app") as HTMLElement);
