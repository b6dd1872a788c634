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

function LogView({ run }: { run: Run }) {
  const { session } = useApp();
  const [entries, setEntries] = useState<LogEntry[]>([]);
  const [dropped, setDropped] = useState(0);
  const [ended, setEnded] = useState(false);
  const [error, setError] = useState<ApiError | undefined>();
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLDivElement>(null);
  const after = useRef(0);
  const finished = useRef(TERMINAL.has(run.status));
  finished.current = TERMINAL.has(run.status);

  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const read = async () => {
      try {
        // drain what is there; once the run has ended and nothing is left, the log is complete
        for (;;) {
          const wasFinished = finished.current;
          const page = await call<Page<LogEntry>>(session, "GET", projectPath(session, `/runs/${run.id}/logs`), {
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
              setEnded(true);
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
  }, [session, run.id]);

  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [entries, follow]);

  return (
    <section aria-labelledby="log-title" class="panel">
      <div class="panel-head">
        <h2 id="log-title">Log</h2>
        <label class="inline">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Follow
        </label>
      </div>
      <ErrorBox error={error} />
      <div class="log" ref={box} role="log" aria-label="Run log" tabIndex={0}>
        {dropped > 0 && <div class="log-line log-system">… {dropped} earlier lines are not shown here</div>}
        {entries.map((e) => (
          <div class={`log-line log-${e.k}`} key={e.seq}>
            <span class="log-ts">{new Date(e.ts).toLocaleTimeString(undefined, { hour12: false })}</span>
            <span class="log-kind">{e.k}</span>
            <span class="log-msg">{e.msg}</span>
          </div>
        ))}
        {entries.length === 0 && <div class="muted">{ended ? "The run wrote nothing." : "Waiting for output…"}</div>}
      </div>
      <p class="muted" role="status">
        {ended ? `Log complete: the run ended ${run.status}.` : "Following the log until the run ends."}
      </p>
    </section>
  );
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
                <dd>{formatDuration(r.duration_ms)}</dd>
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
