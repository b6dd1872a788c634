// Actions: a searchable list, and one action with its versions, compute, parameters and a form
// generated from them that starts a run or calls a sync action.
import { useMemo, useState } from "preact/hooks";
import {
  ApiError,
  all,
  call,
  newIdempotencyKey,
  projectPath,
  type ActionRecord,
  type Json,
  type Run,
  type SyncAnswer,
} from "../api";
import {
  buildParameters,
  choicesFromAnswer,
  errorsFromDetails,
  fieldsFor,
  initialValues,
  type Choice,
  type Field,
  type FieldValue,
} from "../forms";
import { href, navigate } from "../router";
import { CopyButton, ErrorBox, JsonView, Loading, PageTitle, formatDuration, formatTime, useApp, usePoll } from "../util";

export function ActionList({ query }: { query: URLSearchParams }) {
  const { session } = useApp();
  const tag = query.get("tag") ?? "";
  const [search, setSearch] = useState(query.get("q") ?? "");
  const actions = usePoll(() => all<ActionRecord>(session, projectPath(session, "/actions"), { tag }), [session, tag]);
  const allTags = usePoll(() => all<ActionRecord>(session, projectPath(session, "/actions")), [session]);
  const tags = useMemo(
    () => [...new Set((allTags.data ?? []).flatMap((a) => a.spec.tags ?? []))].sort(),
    [allTags.data],
  );
  const needle = search.trim().toLowerCase();
  const shown = (actions.data ?? []).filter((a) => {
    if (!needle) return true;
    const s = a.spec;
    return [a.name, s.short_description, s.description, ...(s.tags ?? [])].some((t) => t && t.toLowerCase().includes(needle));
  });
  return (
    <>
      <PageTitle title="Actions">Actions</PageTitle>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <div class="field">
          <label for="action-search">Search actions</label>
          <input id="action-search" type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="action-tag">Tag</label>
          <select id="action-tag" value={tag} onChange={(e) => navigate(href(["actions"], { tag: e.currentTarget.value }))}>
            <option value="">All tags</option>
            {tags.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </div>
      </form>
      <ErrorBox error={actions.error} />
      {actions.loading && !actions.data && <Loading what="actions" />}
      {actions.data && (
        <p class="muted" role="status">
          {shown.length} of {actions.data.length} action{actions.data.length === 1 ? "" : "s"}
        </p>
      )}
      <ul class="action-list">
        {shown.map((a) => (
          <li class="action-card">
            <h2>
              <a href={href(["actions", a.name])}>{a.name}</a> <span class="muted">v{a.version}</span>
            </h2>
            {a.spec.short_description && <p>{a.spec.short_description}</p>}
            <p class="chips">
              {(a.spec.tags ?? []).map((t) => (
                <a class="chip" href={href(["actions"], { tag: t })}>
                  {t}
                </a>
              ))}
              {(a.spec.sync_actions ?? []).map((s) => (
                <span class="chip chip-sync">sync: {s}</span>
              ))}
            </p>
          </li>
        ))}
      </ul>
    </>
  );
}

function compute(spec: ActionRecord["spec"]): string {
  const c = spec.compute_requirements ?? {};
  const vcpu = (c.vCPU ?? 512) / 1024;
  return `${vcpu} vCPU · ${c.memory ?? 1024} MiB · ${c.storage ?? 21} GiB`;
}

function FieldInput({
  field,
  value,
  error,
  choices,
  onChange,
  onLoad,
  loading,
}: {
  field: Field;
  value: FieldValue;
  error?: string;
  choices: Choice[];
  onChange: (v: FieldValue) => void;
  onLoad?: () => void;
  loading: boolean;
}) {
  const id = `param-${field.key.replace(/[^A-Za-z0-9_-]/g, (c) => `_${c.charCodeAt(0)}_`)}`;
  const hint = field.description ? `${id}-hint` : undefined;
  const err = error ? `${id}-error` : undefined;
  const describedBy = [hint, err].filter(Boolean).join(" ") || undefined;
  const common = { id, name: field.key, "aria-describedby": describedBy, "aria-invalid": error ? true : undefined };
  let input;
  if (field.kind === "boolean") {
    input = <input type="checkbox" {...common} checked={value === true} onChange={(e) => onChange(e.currentTarget.checked)} />;
  } else if (field.kind === "select") {
    input = (
      <select {...common} required={field.required} value={String(value)} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">{choices.length ? "— choose —" : "— no choices loaded —"}</option>
        {choices.map((c) => (
          <option value={c.value}>{c.label}</option>
        ))}
      </select>
    );
  } else if (field.kind === "multiselect") {
    const list = Array.isArray(value) ? value : [];
    input = (
      <fieldset class="checks" aria-describedby={describedBy}>
        <legend class="visually-hidden">{field.label}</legend>
        {choices.length === 0 && <span class="muted">No choices loaded.</span>}
        {choices.map((c) => (
          <label>
            <input
              type="checkbox"
              checked={list.includes(c.value)}
              onChange={(e) => onChange(e.currentTarget.checked ? [...list, c.value] : list.filter((v) => v !== c.value))}
            />{" "}
            {c.label}
          </label>
        ))}
      </fieldset>
    );
  } else if (field.kind === "textarea" || field.kind === "json") {
    input = (
      <textarea
        {...common}
        rows={field.kind === "json" ? 4 : 3}
        required={field.required}
        spellcheck={false}
        placeholder={field.kind === "json" ? "JSON" : undefined}
        value={String(value)}
        onInput={(e) => onChange(e.currentTarget.value)}
      />
    );
  } else {
    const type = field.kind === "password" ? "password" : field.typed && (field.kind === "number" || field.kind === "integer") ? "number" : "text";
    input = (
      <input
        {...common}
        // one element for three input types: Preact's types want the type known statically
        type={type as "text"}
        step={field.kind === "integer" ? 1 : field.kind === "number" ? "any" : undefined}
        autocomplete={field.kind === "password" ? "new-password" : "off"}
        spellcheck={false}
        required={field.required}
        value={String(value)}
        onInput={(e) => onChange(e.currentTarget.value)}
      />
    );
  }
  return (
    <div class={`field${field.kind === "boolean" ? " field-inline" : ""}`}>
      <label for={field.kind === "multiselect" ? undefined : id}>
        {field.label}
        {field.required && <span class="required"> (required)</span>}
        {field.kind === "password" && <span class="muted"> (secret)</span>}
      </label>
      <div class="field-row">
        {input}
        {onLoad && (
          <button type="button" onClick={onLoad} disabled={loading}>
            {loading ? "Loading…" : field.syncAction?.label}
          </button>
        )}
      </div>
      {field.description && (
        <p class="hint" id={hint}>
          {field.description}
        </p>
      )}
      {error && (
        <p class="field-error" id={err}>
          {error}
        </p>
      )}
    </div>
  );
}

interface Answer {
  title: string;
  answer?: SyncAnswer;
  error?: ApiError;
}

function RunForm({ record }: { record: ActionRecord }) {
  const { session } = useApp();
  const spec = record.spec;
  const fields = useMemo(() => fieldsFor(spec), [record.digest]);
  const [values, setValues] = useState<Record<string, FieldValue>>(() => initialValues(fields));
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [choices, setChoices] = useState<Record<string, Choice[]>>({});
  const [loadingChoices, setLoadingChoices] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [result, setResult] = useState<Answer | null>(null);
  const [idempotencyKey, setIdempotencyKey] = useState(newIdempotencyKey);
  const [advanced, setAdvanced] = useState({ timeout: "", retries: "", user: "" });

  const request = (): Record<string, Json> | null => {
    const built = buildParameters(fields, values);
    setFieldErrors(built.errors);
    if (Object.keys(built.errors).length) return null;
    const body: Record<string, Json> = { parameters: built.parameters, version: record.version };
    if (advanced.timeout) body.timeout_seconds = Number(advanced.timeout);
    if (advanced.retries) body.retries = Number(advanced.retries);
    if (advanced.user.trim()) body.external_user_id = advanced.user.trim();
    return body;
  };
  const fail = (title: string, err: unknown) => {
    const error = err instanceof ApiError ? err : new ApiError(-1, { error: "Error", code: -1, message: String(err) });
    setFieldErrors(errorsFromDetails(error.body.details));
    setResult({ title, error });
  };
  const startRun = async (event: Event) => {
    event.preventDefault();
    const body = request();
    if (!body) return;
    setBusy("run");
    try {
      const run = await call<Run>(session, "POST", projectPath(session, `/actions/${encodeURIComponent(spec.name)}/runs`), {
        body,
        headers: { "Idempotency-Key": idempotencyKey },
      });
      setIdempotencyKey(newIdempotencyKey());
      navigate(href(["runs", run.id]));
    } catch (err) {
      fail("The run was not started", err);
    } finally {
      setBusy(null);
    }
  };
  const callSync = async (name: string) => {
    const body = request();
    if (!body) return;
    setBusy(name);
    setResult(null);
    try {
      const answer = await call<SyncAnswer>(
        session,
        "POST",
        projectPath(session, `/actions/${encodeURIComponent(spec.name)}/sync/${encodeURIComponent(name)}`),
        { body },
      );
      setResult({ title: `Answer of ${name}`, answer });
    } catch (err) {
      fail(`${name} failed`, err);
    } finally {
      setBusy(null);
    }
  };
  const loadChoices = async (field: Field) => {
    if (!field.syncAction) return;
    const body = buildParameters(fields.filter((f) => f.key !== field.key), values);
    setLoadingChoices(field.key);
    try {
      const answer = await call<SyncAnswer>(
        session,
        "POST",
        projectPath(session, `/actions/${encodeURIComponent(spec.name)}/sync/${encodeURIComponent(field.syncAction.action)}`),
        { body: { parameters: body.parameters, version: record.version } },
      );
      setChoices((c) => ({ ...c, [field.key]: choicesFromAnswer(answer.ret) }));
      setFieldErrors((e) => ({ ...e, [field.key]: "" }));
    } catch (err) {
      setFieldErrors((e) => ({ ...e, [field.key]: err instanceof ApiError ? err.body.message : String(err) }));
    } finally {
      setLoadingChoices(null);
    }
  };
  let lastGroup: string | undefined;
  return (
    <section aria-labelledby="run-form-title" class="panel">
      <h2 id="run-form-title">Run {spec.name}</h2>
      <form onSubmit={startRun} class="stack" noValidate={false}>
        {fields.length === 0 && <p class="muted">This action takes no parameters.</p>}
        {fields.map((field) => {
          const heading = field.group && field.group !== lastGroup ? <h3 class="group">{field.group}</h3> : null;
          lastGroup = field.group;
          return (
            <>
              {heading}
              <FieldInput
                field={field}
                value={values[field.key]}
                error={fieldErrors[field.key] || undefined}
                choices={choices[field.key] ?? field.choices ?? []}
                onChange={(v) => setValues((old) => ({ ...old, [field.key]: v }))}
                onLoad={field.syncAction ? () => loadChoices(field) : undefined}
                loading={loadingChoices === field.key}
              />
            </>
          );
        })}
        <details class="advanced">
          <summary>Advanced</summary>
          <div class="field">
            <label for="run-timeout">Timeout (seconds)</label>
            <input id="run-timeout" type="number" min={1} aria-describedby="run-timeout-hint" value={advanced.timeout} onInput={(e) => setAdvanced({ ...advanced, timeout: e.currentTarget.value })} />
            <p class="hint muted" id="run-timeout-hint">
              In seconds. {spec.timeout ? `The action's own limit is ${spec.timeout} min (${Number(spec.timeout) * 60} s; action.json's timeout is in minutes).` : "Empty: the action's own limit (action.json's timeout, in minutes)."}
            </p>
          </div>
          <div class="field">
            <label for="run-retries">Retries</label>
            <input id="run-retries" type="number" min={0} max={10} value={advanced.retries} onInput={(e) => setAdvanced({ ...advanced, retries: e.currentTarget.value })} />
          </div>
          <div class="field">
            <label for="run-user">External user id</label>
            <input id="run-user" value={advanced.user} onInput={(e) => setAdvanced({ ...advanced, user: e.currentTarget.value })} />
          </div>
        </details>
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy !== null}>
            {busy === "run" ? "Starting…" : "Start run"}
          </button>
          {(spec.sync_actions ?? []).map((name) => (
            <button type="button" onClick={() => callSync(name)} disabled={busy !== null}>
              {busy === name ? `Calling ${name}…` : `Call ${name}`}
            </button>
          ))}
        </div>
      </form>
      <div aria-live="polite">
        {result && (
          <section class="answer" aria-label={result.title}>
            <h3>{result.title}</h3>
            {result.error && <ErrorBox error={result.error} />}
            {result.answer && (
              <>
                <p class="muted">
                  {result.answer.status} in {formatDuration(result.answer.duration_ms)} · run{" "}
                  <a href={href(["runs", result.answer.run_id])}>{result.answer.run_id}</a>
                </p>
                <JsonView value={result.answer.ret} label={result.title} />
              </>
            )}
          </section>
        )}
      </div>
    </section>
  );
}

export function ActionPage({ name, query }: { name: string; query: URLSearchParams }) {
  const { session } = useApp();
  const version = query.get("version") ?? "";
  const base = projectPath(session, `/actions/${encodeURIComponent(name)}`);
  const record = usePoll((signal) => call<ActionRecord>(session, "GET", base, { query: { version }, signal }), [session, name, version]);
  const versions = usePoll(() => all<ActionRecord>(session, `${base}/versions`), [session, name]);
  const r = record.data;
  const spec = r?.spec;
  return (
    <>
      <PageTitle title={name}>{name}</PageTitle>
      <ErrorBox error={record.error} />
      {!r && !record.error && <Loading what="the action" />}
      {r && spec && (
        <>
          {spec.short_description && <p class="lead">{spec.short_description}</p>}
          {spec.description && spec.description !== spec.short_description && <p>{spec.description}</p>}
          <div class="field version-picker">
            <label for="version">Version</label>
            <select id="version" value={String(r.version)} onChange={(e) => navigate(href(["actions", name], { version: e.currentTarget.value }), true)}>
              {(versions.data ?? [r]).map((v) => (
                <option value={String(v.version)}>
                  v{v.version} · {formatTime(v.created_at)}
                </option>
              ))}
            </select>
          </div>
          <div class="columns">
            <section aria-labelledby="facts-title" class="panel">
              <h2 id="facts-title">Details</h2>
              <dl class="facts">
                <dt>Digest</dt>
                <dd>
                  <code class="digest">{r.digest}</code> <CopyButton text={r.digest} label="Copy the digest" />
                </dd>
                <dt>Registered</dt>
                <dd>{formatTime(r.created_at)}</dd>
                <dt>Compute</dt>
                <dd>{compute(spec)}</dd>
                <dt>Timeout</dt>
                <dd>{spec.timeout ? `${spec.timeout} min (${Number(spec.timeout) * 60} s)` : "default"}</dd>
                <dt>Image</dt>
                <dd>
                  {spec.image_uri ? <code>{spec.image_uri}</code> : spec.docker_config ? `built from ${spec.docker_config.dockerfile ?? "Dockerfile"}` : spec.inherits ? `inherited from ${spec.inherits.name}` : "—"}
                </dd>
                <dt>Command</dt>
                <dd>
                  <code>{[...(spec.container_parameters?.entry_point ?? []), ...(spec.container_parameters?.command ?? [])].join(" ") || "—"}</code>
                </dd>
                <dt>Retry</dt>
                <dd>{spec.retry ? `${spec.retry.count} × after ${spec.retry.interval_seconds} s` : "none"}</dd>
                <dt>Sync actions</dt>
                <dd>{(spec.sync_actions ?? []).join(", ") || "none"}</dd>
                <dt>Tags</dt>
                <dd>{(spec.tags ?? []).join(", ") || "none"}</dd>
                <dt>Runs</dt>
                <dd>
                  <a href={href(["runs"], { action: name })}>runs of {name}</a>
                </dd>
              </dl>
              <h3>Parameters</h3>
              {(spec.parameters ?? []).length === 0 && !spec.parameters_schema && <p class="muted">None.</p>}
              {(spec.parameters ?? []).length > 0 && (
                <div class="table-wrap">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Name</th>
                        <th scope="col">Required</th>
                        <th scope="col">Default</th>
                        <th scope="col">Description</th>
                      </tr>
                    </thead>
                    <tbody>
                      {(spec.parameters ?? []).map((p) => (
                        <tr>
                          <th scope="row">
                            <code>{p.name}</code>
                          </th>
                          <td>{p.required ? "yes" : "no"}</td>
                          <td>{p.default ?? "—"}</td>
                          <td>{p.description ?? ""}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
              {spec.parameters_schema && (
                <details>
                  <summary>Parameters schema</summary>
                  <JsonView value={spec.parameters_schema as Json} label="Parameters schema" />
                </details>
              )}
            </section>
            <RunForm record={r} key={r.digest} />
          </div>
        </>
      )}
    </>
  );
}
