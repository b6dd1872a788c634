// Small shared pieces: polling, formatting, status badges, error boxes, JSON views.
import type { ComponentChildren } from "preact";
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, type Json } from "./api";
import type { Session } from "./session";
import { href } from "./router";

export interface AppContext {
  session: Session;
  signOut: (message?: string) => void;
  setSession: (session: Session) => void;
  hasPipelines: boolean;
}

export const Ctx = createContext<AppContext | null>(null);

export function useApp(): AppContext {
  const value = useContext(Ctx);
  if (!value) throw new Error("no app context");
  return value;
}

export interface Loaded<T> {
  data?: T;
  error?: ApiError;
  loading: boolean;
  reload: () => void;
}

/** Load with ``fn`` when ``deps`` change, and again every ``everyMs`` while the tab is visible. */
export function usePoll<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[], everyMs = 0): Loaded<T> {
  const { signOut } = useApp();
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    let controller: AbortController | undefined;
    setState((s) => ({ ...s, loading: true }));
    const run = async () => {
      controller = new AbortController();
      try {
        const data = await fnRef.current(controller.signal);
        if (!stopped) setState({ data, loading: false });
      } catch (err) {
        if (stopped || (err instanceof DOMException && err.name === "AbortError")) return;
        if (err instanceof ApiError && err.status === 401) {
          signOut("The gateway refused the token (expired or revoked). Sign in again.");
          return;
        }
        const error = err instanceof ApiError ? err : new ApiError(-1, { error: "Error", code: -1, message: String(err) });
        setState((s) => ({ data: s.data, error, loading: false }));
      }
      if (!stopped && everyMs > 0) timer = window.setTimeout(schedule, everyMs);
    };
    const schedule = () => {
      if (document.visibilityState === "visible") void run();
      else timer = window.setTimeout(schedule, everyMs);
    };
    void run();
    return () => {
      stopped = true;
      controller?.abort();
      window.clearTimeout(timer);
    };
  }, [...deps, tick, everyMs]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge status-${status.toLowerCase()}`}>{status}</span>;
}

export function ErrorBox({ error, title }: { error: ApiError | undefined; title?: string }) {
  if (!error) return null;
  const body = error.body;
  return (
    <div class="error-box" role="alert">
      <p>
        <strong>{title ?? (body.code > 0 ? `${body.code} ${body.error}` : body.error)}</strong>: {body.message}
      </p>
      {body.details && body.details.length > 0 && (
        <ul>
          {body.details.map((d) => (
            <li>
              <code>{d.loc.join(".")}</code>: {d.msg}
            </li>
          ))}
        </ul>
      )}
      {(body.exceptionId || body.runId) && (
        <p class="muted">
          {body.exceptionId && (
            <>
              exceptionId <code>{body.exceptionId}</code>{" "}
            </>
          )}
          {body.runId && (
            <>
              run <a href={href(["runs", body.runId])}>{body.runId}</a>
            </>
          )}
        </p>
      )}
    </div>
  );
}

export function JsonView({ value, label }: { value: Json | unknown; label: string }) {
  const text = value === undefined ? "" : JSON.stringify(value, null, 2);
  return (
    <pre class="json" tabIndex={0} aria-label={label}>
      {text}
    </pre>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

/** A page's heading, focused when the page opens so keyboard and screen-reader users land there. */
export function PageTitle({ children, title }: { children: ComponentChildren; title: string }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · hatchway`;
    ref.current?.focus({ preventScroll: true });
  }, [title]);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {children}
    </h1>
  );
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="link-button"
      aria-label={label}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setDone(true);
          window.setTimeout(() => setDone(false), 1500);
        } catch {
          setDone(false);
        }
      }}
    >
      {done ? "copied" : "copy"}
    </button>
  );
}
