// Runs: a filtered list that keeps its statuses current, and one run with its parameters,
// result, exports, error and a live log that follows the run until it ends.
import { useEffect, useRef, useState } from "preact/hooks";
import {
  ApiError,
  STATUSES,
  TERMINAL,
  all,
  call,
  newIdempotencyKey,
  projectPath,
  type ActionRecord,
  type LogEntry,
  type Page,
  type Run,
} from "../api";
import { href, navigate } from "../router";
import {
  CopyButton,
  ErrorBox,
  JsonView,
  Loading,
  PageTitle,
  StatusBadge,
  formatDuration,
  formatTime,
  useApp,
  usePoll,
} from "../util";

const MAX_LOG_LINES = 5000;

export function RunList({ query }: { query: URLSearchParams }) {
  const { session } = useApp();
  const filters = { action: query.get("action") ?? "", status: query.get("status") ?? "", external_user_id: query.get("user") ?? "" };
  const actions = usePoll(() => all<ActionRecord>(session, projectPath(session, "/actions")), [session]);
  const [older, setOlder] = useState<{ items: Run[]; next: string | null } | null>(null);
  const first = usePoll(
    (signal) => call<Page<Run>>(session, "GET", projectPath(session, "/runs"), { query: { ...filters, limit: 50 }, signal }),
    [session, filters.action, filters.status, filters.external_user_id],
    2000,
  );
  useEffect(() => setOlder(null), [filters.action, filters.status, filters.external_user_id]);
  const runs = [...(first.data?.items ?? []), ...(older?.items ?? [])];
  const next = older ? older.next : first.data?.next;
  const loadMore = async () => {
    if (!next) return;
    const page = await call<Page<Run>>(session, "GET", projectPath(session, "/runs"), { query: { ...filters, limit: 50, cursor: next } });
    setOlder({ items: [...(older?.items ?? []), ...page.items], next: page.next });
  };
  // the form edits a draft (re-renders while polling must not reset what the user chose)
  const [draft, setDraft] = useState(filters);
  useEffect(() => setDraft(filters), [filters.action, filters.status, filters.external_user_id]);
  const apply = (event: Event) => {
    event.preventDefault();
    navigate(href(["runs"], { action: draft.action, status: draft.status, user: draft.external_user_id.trim() }));
  };
  return (
    <>
      <PageTitle title="Runs">Runs</PageTitle>
      <form class="filters" onSubmit={apply} aria-label="Filter runs">
        <div class="field">
          <label for="filter-action">Action</label>
          <select id="filter-action" name="action" value={draft.action} onChange={(e) => setDraft({ ...draft, action: e.currentTarget.value })}>
            <option value="">All actions</option>
            {(actions.data ?? []).map((a) => (
              <option value={a.name}>{a.name}</option>
            ))}
            {draft.action && !(actions.data ?? []).some((a) => a.name === draft.action) && (
              <option value={draft.action}>{draft.action}</option>
            )}
          </select>
        </div>
        <div class="field">
          <label for="filter-status">Status</label>
          <select id="filter-status" name="status" value={draft.status} onChange={(e) => setDraft({ ...draft, status: e.currentTarget.value })}>
            <option value="">All statuses</option>
            {STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-user">User</label>
          <input
            id="filter-user"
            name="user"
            value={draft.external_user_id}
            onInput={(e) => setDraft({ ...draft, external_user_id: e.currentTarget.value })}
            placeholder="external user id"
          />
        </div>
        <div class="buttons">
          <button type="submit">Apply</button>
        </div>
      </form>
      <ErrorBox error={first.error} />
      {!first.data && !first.error && <Loading what="runs" />}
      {first.data && runs.length === 0 && <p>No runs match.</p>}
      {runs.length > 0 && (
        <div class="table-wrap">
          <table class="runs">
            <caption class="visually-hidden">Runs, newest first; statuses refresh every two seconds</caption>
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Action</th>
                <th scope="col">Invoked</th>
                <th scope="col">Status</th>
                <th scope="col">Created</th>
                <th scope="col">Duration</th>
                <th scope="col">User</th>
              </tr>
            </thead>
            <tbody>
              {runs.map((run) => (
                <tr key={run.id}>
                  <th scope="row">
                    <a href={href(["runs", run.id])}>
                      <code>{run.id}</code>
                    </a>
                  </th>
                  <td data-label="Action">
                    <a href={href(["actions", run.action.name])}>{run.action.name}</a> <span class="muted">v{run.action.version}</span>
                  </td>
                  <td data-label="Invoked">{run.invoked}</td>
                  <td data-label="Status">
                    <StatusBadge status={run.status} />
                  </td>
                  <td data-label="Created">{formatTime(run.created_at)}</td>
                  <td data-label="Duration">{formatDuration(run.duration_ms)}</td>
                  <td data-label="User">{run.external_user_id ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {next && (
        <button type="button" onClick={loadMore}>
          Load older runs
        </button>
      )}
    </>
  );
}

/** A log line's message with each match of ``needle`` (already lower-cased) marked. */
function Highlighted({ text, needle }: { text: string; needle: string }) {
  if (!needle) return <>{text}</>;
  const parts = [];
  const lower = text.toLowerCase();
  let at = 0;
  for (let found = lower.indexOf(needle); found >= 0; found = lower.indexOf(needle, at)) {
    if (found > at) parts.push(text.slice(at, found));
    parts.push(<mark>{text.slice(found, found + needle.length)}</mark>);
    at = found + needle.length;
  }
  parts.push(text.slice(at));
  return <>{parts}</>;
}

/** A run's log entries, read from the start and then followed until the run has ended. */
export function useLog(runId: string, ended: boolean): { entries: LogEntry[]; dropped: number; complete: boolean; error?: ApiError } {
  const { session } = useApp();
  const [entries, setEntries] = useState<LogEntry[]>([]);
  const [dropped, setDropped] = useState(0);
  const [complete, setComplete] = useState(false);
  const [error, setError] = useState<ApiError | undefined>();
  const after = useRef(0);
  const finished = useRef(ended);
  finished.current = ended;

  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const read = async () => {
      try {
        // drain what is there; once the run has ended and nothing is left, the log is complete
        for (;;) {
          const wasFinished = finished.current;
          const page = await call<Page<LogEntry>>(session, "GET", projectPath(session, `/runs/${encodeURIComponent(runId)}/logs`), {
            query: { after: after.current, limit: 1000 },
          });
          if (stopped) return;
          if (page.items.length) {
            after.current = page.items[page.items.length - 1].seq;
            setEntries((old) => {
              const merged = [...old, ...page.items];
              if (merged.length > MAX_LOG_LINES) setDropped((d) => d + merged.length - MAX_LOG_LINES);
              return merged.slice(-MAX_LOG_LINES);
            });
          }
          if (!page.next) {
            if (wasFinished) {
              setComplete(true);
              return;
            }
            break;
          }
        }
        setError(undefined);
      } catch (err) {
        if (err instanceof ApiError) setError(err);
      }
      if (!stopped) timer = window.setTimeout(read, 1000);
    };
    void read();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [session, runId]);
  return { entries, dropped, complete, error };
}

/** Log lines as a reader sees them: searchable (matching lines only, matches marked, counted), or
 * raw (the messages as the program wrote them, one per line, to select and copy). */
export function LogLines({ entries, dropped, complete, label, emptyText }: {
  entries: LogEntry[];
  dropped: number;
  complete: boolean;
  label: string;
  emptyText: string;
}) {
  const [query, setQuery] = useState("");
  const [raw, setRaw] = useState(false);
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLDivElement>(null);
  const rawBox = useRef<HTMLPreElement>(null);
  // spaces count ("line 1 " is not "line 10"), but a query of spaces alone is no query
  const needle = query.trim() ? query.toLowerCase() : "";
  const shown = needle ? entries.filter((e) => e.msg.toLowerCase().includes(needle)) : entries;
  const rawText = shown.map((e) => e.msg.replace(/\n$/, "")).join("\n");
  const ids = useRef(`log-${Math.random().toString(36).slice(2, 8)}`).current;

  useEffect(() => {
    const target = raw ? rawBox.current : box.current;
    if (follow && target) target.scrollTop = target.scrollHeight;
  }, [entries, follow, raw, needle]);

  return (
    <>
      <div class="log-tools">
        <div class="field log-search">
          <label for={`${ids}-search`}>Search the log</label>
          <input id={`${ids}-search`} type="search" value={query} onInput={(e) => setQuery(e.currentTarget.value)} placeholder="text in a line" aria-describedby={`${ids}-count`} />
        </div>
        <label class="inline">
          <input type="checkbox" checked={raw} onChange={(e) => setRaw(e.currentTarget.checked)} /> Raw
        </label>
        <label class="inline">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Follow
        </label>
        {raw && <CopyButton text={rawText} label="Copy the raw log" />}
      </div>
      <p class="muted log-count" id={`${ids}-count`} aria-live="polite">
        {needle ? `${shown.length} of ${entries.length} lines match “${query}”` : `${entries.length} lines`}
      </p>
      {raw ? (
        <pre class="log log-raw" ref={rawBox} aria-label={`${label}, raw`} tabIndex={0}>
          {rawText}
        </pre>
      ) : (
        <div class="log" ref={box} role="log" aria-label={label} tabIndex={0}>
          {dropped > 0 && <div class="log-line log-system">… {dropped} earlier lines are not shown here</div>}
          {shown.map((e) => (
            <div class={`log-line log-${e.k}`} key={e.seq}>
              <span class="log-ts">{new Date(e.ts).toLocaleTimeString(undefined, { hour12: false })}</span>
              <span class="log-kind">{e.k}</span>
              <span class="log-msg">
                <Highlighted text={e.msg} needle={needle} />
              </span>
            </div>
          ))}
          {entries.length === 0 && <div class="muted">{complete ? emptyText : "Waiting for output…"}</div>}
          {entries.length > 0 && shown.length === 0 && <div class="muted">No line matches.</div>}
        </div>
      )}
    </>
  );
}

function LogView({ run }: { run: Run }) {
  const log = useLog(run.id, TERMINAL.has(run.status));
  return (
    <section aria-labelledby="log-title" class="panel">
      <div class="panel-head">
        <h2 id="log-title">Log</h2>
      </div>
      <ErrorBox error={log.error} />
      <LogLines entries={log.entries} dropped={log.dropped} complete={log.complete} label="Run log" emptyText="The run wrote nothing." />
      <p class="muted" role="status">
        {log.complete ? `Log complete: the run ended ${run.status}.` : "Following the log until the run ends."}
      </p>
    </section>
  );
}

/** How long the run has taken: ticking while it runs, its final duration once it has ended. */
export function Elapsed({ run }: { run: Pick<Run, "status" | "started_at" | "duration_ms" | "finished_at"> }) {
  const [now, setNow] = useState(Date.now());
  const running = !TERMINAL.has(run.status) && run.started_at !== null;
  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [running]);
  if (TERMINAL.has(run.status)) {
    const ms = run.duration_ms ?? (run.started_at && run.finished_at ? Date.parse(run.finished_at) - Date.parse(run.started_at) : null);
    return <span class="elapsed">{formatDuration(ms)}</span>;
  }
  if (!run.started_at) return <span class="elapsed muted">not started yet</span>;
  // whole seconds while ticking (a clock skewed behind the gateway's never shows a negative time)
  const seconds = Math.max(0, Math.floor((now - Date.parse(run.started_at)) / 1000));
  const text = seconds < 60 ? `${seconds} s` : seconds < 3600 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : formatDuration(seconds * 1000);
  return <span class="elapsed">{text} · running</span>;
}

/** Run again with the same parameters, and the whole log as a file. */
function RunTools({ run }: { run: Run }) {
  const { session } = useApp();
  const [error, setError] = useState<ApiError | undefined>();
  const [busy, setBusy] = useState(false);
  // secret values come back hidden: a re-run would send the placeholder instead of the secret
  const hasSecret = Object.keys(run.parameters).some((k) => k.startsWith("#"));
  const rerun = async () => {
    setBusy(true);
    try {
      const made = await call<Run>(session, "POST", projectPath(session, `/actions/${encodeURIComponent(run.action.name)}/runs`), {
        body: { parameters: run.parameters, version: run.action.version },
        headers: { "Idempotency-Key": newIdempotencyKey() },
      });
      navigate(href(["runs", made.id]));
    } catch (err) {
      if (err instanceof ApiError) setError(err);
    } finally {
      setBusy(false);
    }
  };
  const download = async () => {
    try {
      const entries = await all<LogEntry>(session, projectPath(session, `/runs/${run.id}/logs`), {}, 1_000_000);
      const text = entries.map((e) => `${new Date(e.ts).toISOString()} ${e.k} ${e.msg}\n`).join("");
      const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
      const link = document.createElement("a");
      link.href = url;
      link.download = `${run.id}.log`;
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      if (err instanceof ApiError) setError(err);
    }
  };
  return (
    <div class="buttons run-tools">
      {run.mode === "async" && (
        <button type="button" onClick={rerun} disabled={busy || hasSecret} title={hasSecret ? "Secret parameters are hidden: start it from the action's page" : undefined}>
          {busy ? "Starting…" : "Run again"}
        </button>
      )}
      <button type="button" onClick={download}>
        Download log
      </button>
      <ErrorBox error={error} />
    </div>
  );
}

function CancelButton({ run, onDone }: { run: Run; onDone: () => void }) {
  const { session } = useApp();
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<ApiError | undefined>();
  const yes = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (confirming) yes.current?.focus();
  }, [confirming]);
  if (TERMINAL.has(run.status)) return null;
  const cancel = async () => {
    try {
      await call<Run>(session, "POST", projectPath(session, `/runs/${run.id}/cancel`));
      setConfirming(false);
      onDone();
    } catch (err) {
      if (err instanceof ApiError) setError(err);
    }
  };
  return (
    <div class="cancel">
      {!confirming ? (
        <button type="button" class="danger" onClick={() => setConfirming(true)} disabled={run.status === "TERMINATING"}>
          {run.status === "TERMINATING" ? "Cancelling…" : "Cancel run"}
        </button>
      ) : (
        <div role="group" aria-label="Confirm cancel" class="buttons">
          <span>Stop this run?</span>
          <button type="button" class="danger" ref={yes} onClick={cancel}>
            Yes, cancel it
          </button>
          <button type="button" onClick={() => setConfirming(false)}>
            Keep it running
          </button>
        </div>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

export function RunPage({ id }: { id: string }) {
  const { session } = useApp();
  const [done, setDone] = useState(false);
  const run = usePoll(
    (signal) => call<Run>(session, "GET", projectPath(session, `/runs/${encodeURIComponent(id)}`), { signal }),
    [session, id],
    done ? 0 : 1000,
  );
  const r = run.data;
  useEffect(() => {
    if (r && TERMINAL.has(r.status)) setDone(true);
  }, [r?.status]);
  const exceptionId = r?.error?.exceptionId ?? r?.error?.exception_id;
  return (
    <>
      <PageTitle title={`Run ${id}`}>
        Run <code>{id}</code>
      </PageTitle>
      <ErrorBox error={run.error} />
      {!r && !run.error && <Loading what="the run" />}
      {r && (
        <>
          <div class="run-head">
            <p role="status" aria-live="polite" class="run-status">
              Status <StatusBadge status={r.status} />
              {r.status_reason && <span class="muted"> {r.status_reason}</span>}
            </p>
            {/* outside the live region: a screen reader is not told every second */}
            {r.started_at && (
              <p class="run-elapsed">
                {TERMINAL.has(r.status) ? "Took" : "Elapsed"} <Elapsed run={r} />
              </p>
            )}
            <CancelButton run={r} onDone={run.reload} />
            <RunTools run={r} />
          </div>
          <div class="columns">
            <section aria-labelledby="run-facts" class="panel">
              <h2 id="run-facts">Details</h2>
              <dl class="facts">
                <dt>Action</dt>
                <dd>
                  <a href={href(["actions", r.action.name], { version: String(r.action.version) })}>{r.action.name}</a> v{r.action.version}
                </dd>
                <dt>Digest</dt>
                <dd>
                  <code class="digest">{r.action.digest}</code>
                </dd>
                <dt>Invoked</dt>
                <dd>
                  {r.invoked} ({r.mode})
                </dd>
                <dt>Attempt</dt>
                <dd>
                  {r.attempt} of {r.max_attempts}
                </dd>
                <dt>Created</dt>
                <dd>{formatTime(r.created_at)}</dd>
                <dt>Started</dt>
                <dd>{formatTime(r.started_at)}</dd>
                <dt>Finished</dt>
                <dd>{formatTime(r.finished_at)}</dd>
                <dt>Duration</dt>
                <dd>
                  <Elapsed run={r} />
                </dd>
                <dt>User</dt>
                <dd>{r.external_user_id ?? "—"}</dd>
              </dl>
              {r.error && (
                <div class="error-box" role="alert">
                  <p>
                    <strong>{r.error.kind ?? "error"}</strong>: {r.error.message}
                  </p>
                  {exceptionId && (
                    <p>
                      exceptionId <code>{exceptionId}</code> <CopyButton text={exceptionId} label="Copy the exception id" />
                    </p>
                  )}
                </div>
              )}
              <h3>Parameters</h3>
              {Object.keys(r.parameters).length === 0 ? (
                <p class="muted">None.</p>
              ) : (
                <div class="table-wrap">
                  <table>
                    <tbody>
                      {Object.entries(r.parameters).map(([k, v]) => (
                        <tr>
                          <th scope="row">
                            <code>{k}</code>
                          </th>
                          <td class="param-value">{typeof v === "string" ? v : JSON.stringify(v)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
              <h3>Result</h3>
              {r.ret === null ? <p class="muted">{TERMINAL.has(r.status) ? "No result." : "Not yet."}</p> : <JsonView value={r.ret} label="Result" />}
              <h3>Exports</h3>
              {Object.keys(r.exports ?? {}).length === 0 ? <p class="muted">None.</p> : <JsonView value={r.exports} label="Exports" />}
            </section>
            {/* keyed by run: another run's page starts a log of its own, never with this one's lines */}
            <LogView run={r} key={r.id} />
          </div>
          <p>
            <a href={href(["runs"], { action: r.action.name })}>More runs of {r.action.name}</a>
          </p>
        </>
      )}
    </>
  );
}
