// Pipelines (shown when the gateway answers GET .../pipelines): definitions, executions, and one
// execution as a timeline of its steps with approve and terminate buttons. Fields are read
// defensively: a step without times is drawn as a row without a bar.
import { useState } from "preact/hooks";
import { ApiError, all, call, projectPath, type Json } from "../api";
import { href, navigate } from "../router";
import { ErrorBox, Loading, PageTitle, StatusBadge, formatDuration, formatTime, useApp, usePoll } from "../util";
import { LogLines, useLog } from "./runs";

interface Variable {
  key: string;
  value?: string;
  description?: string;
  encrypted?: boolean;
  settable?: boolean;
}

interface PipelineStep {
  name: string;
  type?: string;
  action?: string;
  sync_action?: string;
  docker_image_name?: string;
  trigger_time?: string;
  run_next?: string;
  disabled?: boolean;
  timeout?: number;
}

/** What a step does, in words: the action it runs, the container it starts, or an approval gate. */
export function stepKind(s: PipelineStep): string {
  if (s.type === "WAIT_FOR_APPROVE") return "approval: waits for someone to approve";
  if (s.action) return `action ${s.action}${s.sync_action ? ` · ${s.sync_action}` : ""}`;
  if (s.docker_image_name) return `container ${s.docker_image_name}`;
  return s.type ? s.type.toLowerCase().replace(/_/g, " ") : "step";
}

interface Pipeline {
  name: string;
  description?: string;
  steps?: PipelineStep[];
  variables?: Variable[];
}

interface StepState {
  name: string;
  status: string;
  started_at?: string | null;
  finished_at?: string | null;
  run_id?: string | null;
  status_reason?: string | null;
  approved_by?: string | null;
}

interface Execution {
  id: string;
  pipeline?: string;
  status: string;
  created_at?: string;
  started_at?: string | null;
  finished_at?: string | null;
  steps?: StepState[];
}

const FINISHED = new Set(["SUCCESSFUL", "FAILED", "TERMINATED", "WARNING"]);
/** A step in one of these will not write to its run's log any more. */
const STEP_DONE = new Set([...FINISHED, "SKIPPED", "NOT_EXECUTED"]);

/** The log of the run a step started, followed while the step runs; read only once it is opened. */
function StepLog({ step }: { step: StepState & { run_id: string } }) {
  const log = useLog(step.run_id, STEP_DONE.has(step.status));
  return (
    <>
      <ErrorBox error={log.error} />
      <LogLines entries={log.entries} dropped={log.dropped} complete={log.complete} label={`Log of step ${step.name}`} emptyText="The step's run wrote nothing." />
    </>
  );
}

function StepLogDisclosure({ step }: { step: StepState & { run_id: string } }) {
  const [open, setOpen] = useState(false);
  return (
    <details class="step-log" onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
      <summary>Log of {step.name}</summary>
      {open && <StepLog step={step} />}
    </details>
  );
}
const base = (name: string) => `/pipelines/${encodeURIComponent(name)}`;

export function PipelineList() {
  const { session } = useApp();
  const list = usePoll(() => all<Pipeline>(session, projectPath(session, "/pipelines")), [session]);
  return (
    <>
      <PageTitle title="Pipelines">Pipelines</PageTitle>
      <ErrorBox error={list.error} />
      {!list.data && !list.error && <Loading what="pipelines" />}
      {list.data && list.data.length === 0 && <p>No pipelines in this environment.</p>}
      <ul class="action-list">
        {(list.data ?? []).map((p) => (
          <li class="action-card">
            <h2>
              <a href={href(["pipelines", p.name])}>{p.name}</a>
            </h2>
            {p.description && <p>{p.description}</p>}
            <p class="muted">{(p.steps ?? []).map((s) => s.name).join(" → ") || "no steps"}</p>
          </li>
        ))}
      </ul>
    </>
  );
}

export function PipelinePage({ name }: { name: string }) {
  const { session } = useApp();
  const pipeline = usePoll((signal) => call<Pipeline>(session, "GET", projectPath(session, base(name)), { signal }), [session, name]);
  const executions = usePoll(() => all<Execution>(session, projectPath(session, `${base(name)}/executions`), {}, 50), [session, name], 3000);
  const [error, setError] = useState<ApiError | undefined>();
  const settable = (pipeline.data?.variables ?? []).filter((v) => v.settable);
  const start = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const variables: Record<string, Json> = {};
    for (const v of settable) {
      const value = String(form.get(v.key) ?? "");
      if (value !== "") variables[v.key] = value;
    }
    try {
      const execution = await call<Execution>(session, "POST", projectPath(session, `${base(name)}/executions`), { body: { variables } });
      navigate(href(["pipelines", name, "executions", execution.id]));
    } catch (err) {
      if (err instanceof ApiError) setError(err);
    }
  };
  const p = pipeline.data;
  return (
    <>
      <PageTitle title={name}>Pipeline {name}</PageTitle>
      <ErrorBox error={pipeline.error} />
      {p && (
        <div class="columns">
          <section class="panel" aria-labelledby="steps-title">
            <h2 id="steps-title">Steps</h2>
            <ol class="steps">
              {(p.steps ?? []).map((s) => (
                <li>
                  <strong>{s.name}</strong> <span class="muted">{stepKind(s)}</span>
                  <br />
                  <span class="muted">
                    {s.trigger_time ?? "ON_EVERY_EXECUTION"} · {s.run_next ?? "WAIT_ON_SUCCESS"}
                    {s.timeout ? ` · timeout ${s.timeout} s` : ""}
                    {s.disabled ? " · disabled" : ""}
                  </span>
                </li>
              ))}
            </ol>
          </section>
          <section class="panel" aria-labelledby="start-title">
            <h2 id="start-title">Run {name}</h2>
            <form onSubmit={start} class="stack">
              {settable.map((v) => (
                <div class="field">
                  <label for={`var-${v.key}`}>{v.key}</label>
                  <input id={`var-${v.key}`} name={v.key} type={(v.encrypted ? "password" : "text") as "text"} defaultValue={v.encrypted ? "" : v.value ?? ""} />
                  {v.description && <p class="hint">{v.description}</p>}
                </div>
              ))}
              <ErrorBox error={error} />
              <button type="submit" class="primary">
                Start execution
              </button>
            </form>
            <h2>Executions</h2>
            <ErrorBox error={executions.error} />
            <ul class="plain">
              {(executions.data ?? []).map((e) => (
                <li>
                  <a href={href(["pipelines", name, "executions", e.id])}>
                    <code>{e.id}</code>
                  </a>{" "}
                  <StatusBadge status={e.status} /> <span class="muted">{formatTime(e.created_at ?? e.started_at)}</span>
                </li>
              ))}
            </ul>
          </section>
        </div>
      )}
    </>
  );
}

function Timeline({ steps }: { steps: StepState[] }) {
  const times = steps.flatMap((s) => [s.started_at, s.finished_at]).filter(Boolean).map((t) => Date.parse(String(t)));
  const start = times.length ? Math.min(...times) : 0;
  const end = Math.max(times.length ? Math.max(...times) : 0, Date.now() > start && steps.some((s) => s.started_at && !s.finished_at) ? Date.now() : 0);
  const span = Math.max(1, end - start);
  return (
    <ol class="timeline" aria-label="Steps of this execution">
      {steps.map((s) => {
        const from = s.started_at ? Date.parse(s.started_at) : null;
        const to = s.finished_at ? Date.parse(s.finished_at) : from !== null ? end : null;
        return (
          <li class="timeline-row">
            <span class="timeline-name">{s.name}</span>
            <span class="timeline-track">
              {from !== null && to !== null && (
                <span
                  class={`timeline-bar status-${s.status.toLowerCase()}`}
                  style={{ left: `${((from - start) / span) * 100}%`, width: `${Math.max(1, ((to - from) / span) * 100)}%` }}
                />
              )}
            </span>
            <span class="timeline-status">
              <StatusBadge status={s.status} /> {from !== null && to !== null ? formatDuration(to - from) : ""}
              {s.run_id && (
                <>
                  {" "}
                  <a href={href(["runs", s.run_id])}>run</a>
                </>
              )}
            </span>
            {s.approved_by && (
              <span class="timeline-note">
                approved by <strong>{s.approved_by}</strong> at <time dateTime={s.finished_at ?? undefined}>{formatTime(s.finished_at)}</time>
              </span>
            )}
            {!s.approved_by && s.status === "WAITING_FOR_APPROVE" && (
              <span class="timeline-note">waiting for approval since {formatTime(s.started_at)}</span>
            )}
            {s.run_id && <StepLogDisclosure step={{ ...s, run_id: s.run_id }} />}
          </li>
        );
      })}
    </ol>
  );
}

export function ExecutionPage({ pipeline, id }: { pipeline: string; id: string }) {
  const { session } = useApp();
  const path = projectPath(session, `${base(pipeline)}/executions/${encodeURIComponent(id)}`);
  const execution = usePoll((signal) => call<Execution>(session, "GET", path, { signal }), [session, path], 1500);
  const [error, setError] = useState<ApiError | undefined>();
  const act = async (what: "approve" | "terminate") => {
    try {
      await call(session, "POST", `${path}/${what}`);
      execution.reload();
    } catch (err) {
      if (err instanceof ApiError) setError(err);
    }
  };
  const e = execution.data;
  const waiting = (e?.steps ?? []).some((s) => s.status === "WAITING_FOR_APPROVE");
  return (
    <>
      <PageTitle title={`Execution ${id}`}>
        Execution <code>{id}</code>
      </PageTitle>
      <p>
        <a href={href(["pipelines", pipeline])}>Pipeline {pipeline}</a>
      </p>
      <ErrorBox error={execution.error ?? error} />
      {e && (
        <>
          <p role="status" aria-live="polite">
            Status <StatusBadge status={e.status} /> <span class="muted">started {formatTime(e.started_at ?? e.created_at)}</span>
          </p>
          <div class="buttons">
            {waiting && (
              <button type="button" class="primary" onClick={() => act("approve")}>
                Approve
              </button>
            )}
            {!FINISHED.has(e.status) && (
              <button type="button" class="danger" onClick={() => act("terminate")}>
                Terminate
              </button>
            )}
          </div>
          <Timeline steps={e.steps ?? []} />
        </>
      )}
    </>
  );
}
