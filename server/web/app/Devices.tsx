/** @jsxImportSource preact */
/** The devices that get push notifications (by push service), each removable; Notify me adds this one. */
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.ts";
import { subscribeDevice } from "./push.ts";

export function Devices() {
  const [devices, setDevices] = useState<Array<{ id: string; push: string; createdAt: string }>>([]);
  const [said, setSaid] = useState<string | null>(null);
  const load = (): void => void api.pushDevices().then(setDevices, () => {});
  useEffect(load, []);
  return (
    <section class="devices" aria-label="Notified devices">
      <button
        type="button"
        onClick={async () => {
          try {
            setSaid(await subscribeDevice());
          } catch (err) {
            setSaid(`Could not subscribe: ${(err as Error).message}`);
          }
          load();
        }}
      >
        Notify me
      </button>
      {said && <span role="status">{said}</span>}
      {devices.length > 0 && (
        <ul>
          {devices.map((d) => (
            <li>
              {d.push} · since {new Date(d.createdAt).toLocaleDateString()}{" "}
              <button type="button" onClick={async () => { await api.pushRemove(d.id); load(); }}>Remove</button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
