// The dashboard: queue and workers now (and as sampled while the page is open), runs per status
// over the last hour or day, the p50/p95 duration and the error rate of each action, and the
// newest failed runs - refreshed every few seconds while the tab is visible.
import type { ChartConfiguration } from "chart.js";
import { useEffect, useMemo, useState } from "preact/hooks";
import { call, projectPath, type Page, type Run, type Stats, type Status } from "../api";
import { BarChart, cssColor } from "../charts";
import { href } from "../router";
import { ErrorBox, Loading, PageTitle, formatDuration, formatTime, useApp, usePoll } from "../util";

const COLORS: Record<Status, [string, string]> = {
  ENQUEUED: ["--status-enqueued", "#7a8599"],
  INPROGRESS: ["--status-inprogress", "#2f6fd6"],
  SUCCESSFUL: ["--status-successful", "#1e8a4c"],
  FAILED: ["--status-failed", "#c8322f"],
  TERMINATING: ["--status-terminating", "#d98a1c"],
  TERMINATED: ["--status-terminated", "#8a5cc2"],
};

function bucketLabel(iso: string, window: string): string {
  const date = new Date(iso);
  return window === "hour"
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
}

/** The queue and the workers at one refresh: the stats API answers them as of now only. */
interface Sample {
  at: number;
  queued: number;
  busy: number | null;
}
const MAX_SAMPLES = 60;

function loadChart(samples: Sample[]): ChartConfiguration<"bar"> {
  const labels = samples.map((s) => new Date(s.at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }));
  const datasets = [{ label: "Queue depth", data: samples.map((s) => s.queued), backgroundColor: cssColor(...COLORS.ENQUEUED) }];
  if (samples.some((s) => s.busy !== null)) {
    datasets.push({ label: "Workers busy", data: samples.map((s) => s.busy ?? 0), backgroundColor: cssColor(...COLORS.INPROGRESS) });
  }
  return {
    type: "bar",
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { ticks: { maxTicksLimit: 8 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { position: "bottom" } },
    },
  };
}

function Card({ label, value, hint, to }: { label: string; value: string | number; hint?: string; to?: string }) {
  const body = (
    <>
      <span class="card-value">{value}</span>
      <span class="card-label">{label}</span>
      {hint && <span class="card-hint">{hint}</span>}
    </>
  );
  return <li class="card">{to ? <a href={to}>{body}</a> : body}</li>;
}

function statusChart(stats: Stats): ChartConfiguration<"bar"> {
  const labels = stats.buckets.map((b) => bucketLabel(b.start, stats.window));
  const datasets = stats.statuses
    .filter((status) => stats.buckets.some((b) => b.counts[status]))
    .map((status) => ({
      label: status,
      data: stats.buckets.map((b) => b.counts[status] ?? 0),
      backgroundColor: cssColor(...COLORS[status]),
      stack: "runs",
    }));
  return {
    type: "bar",
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { stacked: true, ticks: { maxTicksLimit: 12 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { position: "bottom" } },
    },
  };
}

function durationChart(stats: Stats): ChartConfiguration<"bar"> {
  const labels = stats.durations.map((d) => `${d.action} · ${d.invoked}`);
  return {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "p50", data: stats.durations.map((d) => (d.p50_ms ?? 0) / 1000), backgroundColor: cssColor("--accent", "#2f6fd6") },
        { label: "p95", data: stats.durations.map((d) => (d.p95_ms ?? 0) / 1000), backgroundColor: cssColor("--accent-2", "#d98a1c") },
      ],
    },
    options: {
      indexAxis: "y",
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { beginAtZero: true, title: { display: true, text: "seconds" } } },
      plugins: { legend: { position: "bottom" } },
    },
  };
}

function percent(rate: number): string {
  return `${(rate * 100).toFixed(rate > 0 && rate < 0.1 ? 1 : 0)}%`;
}

/** The error rate of each action in the window, worst first, and the newest failed runs. */
function Failures({ stats, windowText }: { stats: Stats; windowText: string }) {
  const { session } = useApp();
  const recent = usePoll(
    (signal) => call<Page<Run>>(session, "GET", projectPath(session, "/runs"), { query: { status: "FAILED", limit: 5 }, signal }),
    [session],
    5000,
  );
  const rates = [...stats.error_rates].sort((a, b) => b.error_rate - a.error_rate || b.failed - a.failed || a.action.localeCompare(b.action));
  return (
    <div class="columns failures">
      <section class="panel" aria-labelledby="rates-title">
        <h2 id="rates-title">Error rate per action</h2>
        <p class="muted">Failed runs of those that ended on their own (successful or failed; cancelled ones are not counted), {windowText}.</p>
        {rates.length === 0 ? (
          <p class="muted">No finished runs in this window.</p>
        ) : (
          <div class="table-wrap">
            <table aria-labelledby="rates-title">
              <thead>
                <tr>
                  <th scope="col">Action</th>
                  <th scope="col">Invoked</th>
                  <th scope="col">Error rate</th>
                  <th scope="col">Failed / finished</th>
                </tr>
              </thead>
              <tbody>
                {rates.map((d) => (
                  <tr class={d.failed ? "has-failures" : undefined}>
                    <th scope="row">
                      <a href={href(["runs"], { action: d.action, status: d.failed ? "FAILED" : undefined })}>{d.action}</a>
                    </th>
                    <td>{d.invoked}</td>
                    <td>
                      <span class="rate" role="meter" aria-label={`Error rate of ${d.action} ${d.invoked}`} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(d.error_rate * 100)}>
                        <span class="rate-bar" style={{ width: `${d.error_rate * 100}%` }} />
                      </span>{" "}
                      {percent(d.error_rate)}
                    </td>
                    <td>
                      {d.failed} / {d.finished}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <section class="panel" aria-labelledby="recent-failures-title">
        <h2 id="recent-failures-title">Recent failures</h2>
        <ErrorBox error={recent.error} />
        {recent.data && recent.data.items.length === 0 && <p class="muted">No failed runs.</p>}
        <ul class="plain recent-failures" aria-labelledby="recent-failures-title">
          {(recent.data?.items ?? []).map((run) => (
            <li>
              <a href={href(["runs", run.id])}>
                <code>{run.id}</code>
              </a>{" "}
              <a href={href(["actions", run.action.name])}>{run.action.name}</a> <span class="muted">{formatTime(run.finished_at ?? run.created_at)}</span>
              {(run.error?.message || run.status_reason) && <div class="failure-reason">{run.error?.message ?? run.status_reason}</div>}
            </li>
          ))}
        </ul>
        {recent.data && recent.data.items.length > 0 && <a href={href(["runs"], { status: "FAILED" })}>All failed runs</a>}
      </section>
    </div>
  );
}

export function Dashboard() {
  const { session } = useApp();
  const [window, setWindow] = useState<"hour" | "day">("hour");
  const stats = usePoll(
    (signal) => call<Stats>(session, "GET", projectPath(session, "/stats"), { query: { window }, signal }),
    [session, window],
    5000,
  );
  const data = stats.data;
  const [samples, setSamples] = useState<Sample[]>([]);
  useEffect(() => setSamples([]), [session.project, session.environment]);
  useEffect(() => {
    if (data) setSamples((kept) => [...kept, { at: Date.now(), queued: data.queue.enqueued, busy: data.workers?.busy ?? null }].slice(-MAX_SAMPLES));
  }, [data]);
  const loadConfig = useMemo(() => (samples.length ? loadChart(samples) : null), [samples]);
  const statusConfig = useMemo(() => (data ? statusChart(data) : null), [data]);
  const durationConfig = useMemo(() => (data ? durationChart(data) : null), [data]);
  const total = data ? Object.values(data.totals).reduce((a, b) => a + b, 0) : 0;
  const windowText = window === "hour" ? "last hour" : "last 24 hours";
  return (
    <>
      <PageTitle title="Dashboard">Dashboard</PageTitle>
      <p class="muted">
        {session.project} · {session.environment}
      </p>
      <fieldset class="segmented">
        <legend>Window</legend>
        {(["hour", "day"] as const).map((w) => (
          <label>
            <input type="radio" name="window" value={w} checked={window === w} onChange={() => setWindow(w)} />
            <span>{w === "hour" ? "Last hour" : "Last 24 hours"}</span>
          </label>
        ))}
      </fieldset>
      <ErrorBox error={stats.error} />
      {!data && !stats.error && <Loading what="the numbers" />}
      {data && (
        <>
          <ul class="cards" aria-label="Now">
            <Card label="Queue depth" value={data.queue.enqueued} hint="runs waiting" to={href(["runs"], { status: "ENQUEUED" })} />
            <Card label="In progress" value={data.queue.in_progress} to={href(["runs"], { status: "INPROGRESS" })} />
            <Card
              label="Workers busy"
              value={data.workers ? `${data.workers.busy} / ${data.workers.size}` : "—"}
              hint={data.workers ? "busy / threads" : "shown to the global admin"}
            />
            <Card label={`Runs, ${windowText}`} value={total} to={href(["runs"])} />
            <Card label={`Failed, ${windowText}`} value={data.totals.FAILED ?? 0} to={href(["runs"], { status: "FAILED" })} />
          </ul>
          <div class="charts">
            {loadConfig && (
              <BarChart
                config={loadConfig}
                caption="Queue depth and workers busy, at each refresh while this page is open"
                label={`Bar chart of the queue and the workers over time: now ${data.queue.enqueued} runs waiting${
                  data.workers ? `, ${data.workers.busy} of ${data.workers.size} workers busy` : ""
                }.`}
                table={
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Time</th>
                        <th scope="col">Queue depth</th>
                        <th scope="col">Workers busy</th>
                      </tr>
                    </thead>
                    <tbody>
                      {samples.map((s) => (
                        <tr>
                          <th scope="row">{new Date(s.at).toLocaleTimeString()}</th>
                          <td>{s.queued}</td>
                          <td>{s.busy ?? "—"}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                }
              />
            )}
            {statusConfig && (
              <BarChart
                config={statusConfig}
                caption={`Runs per status, ${windowText}`}
                label={`Stacked bar chart of runs per status for the ${windowText}: ${data.statuses
                  .filter((s) => data.totals[s])
                  .map((s) => `${data.totals[s]} ${s}`)
                  .join(", ") || "no runs"}.`}
                table={
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Status</th>
                        <th scope="col">Runs</th>
                      </tr>
                    </thead>
                    <tbody>
                      {data.statuses.map((s) => (
                        <tr>
                          <th scope="row">{s}</th>
                          <td>{data.totals[s] ?? 0}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                }
              />
            )}
            {durationConfig && (
              <BarChart
                config={durationConfig}
                caption={`Duration per action (p50 and p95), ${windowText}`}
                label={
                  data.durations.length
                    ? `Bar chart of durations: ${data.durations
                        .map((d) => `${d.action} ${d.invoked} p50 ${formatDuration(d.p50_ms)}, p95 ${formatDuration(d.p95_ms)}`)
                        .join("; ")}.`
                    : "No finished runs in this window."
                }
                table={
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Action</th>
                        <th scope="col">Invoked</th>
                        <th scope="col">Runs</th>
                        <th scope="col">Failed</th>
                        <th scope="col">p50</th>
                        <th scope="col">p95</th>
                        <th scope="col">max</th>
                      </tr>
                    </thead>
                    <tbody>
                      {data.durations.map((d) => (
                        <tr>
                          <th scope="row">
                            <a href={href(["actions", d.action])}>{d.action}</a>
                          </th>
                          <td>{d.invoked}</td>
                          <td>{d.count}</td>
                          <td>{d.failed}</td>
                          <td>{formatDuration(d.p50_ms)}</td>
                          <td>{formatDuration(d.p95_ms)}</td>
                          <td>{formatDuration(d.max_ms)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                }
              />
            )}
          </div>
          <Failures stats={data} windowText={windowText} />
          {data.truncated && <p class="muted">Only the newest runs of this window are counted.</p>}
        </>
      )}
    </>
  );
}
