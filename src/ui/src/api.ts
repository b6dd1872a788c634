// The public HTTP API, called with the session's token as a Bearer header.
import type { Session } from "./session";

export interface ErrorBody {
  status?: string;
  error: string;
  code: number;
  message: string;
  exceptionId?: string;
  runId?: string;
  details?: { loc: (string | number)[]; msg: string; type: string }[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.message);
  }
  get isOffline(): boolean {
    return this.status === 0;
  }
}

export interface Page<T> {
  items: T[];
  next: string | null;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Parameter {
  name: string;
  description?: string | null;
  required?: boolean;
  default?: string | null;
}

export interface ActionSpec {
  name: string;
  description?: string | null;
  short_description?: string | null;
  parameters?: Parameter[];
  parameters_schema?: Record<string, unknown> | null;
  compute_requirements?: { vCPU?: number; memory?: number; storage?: number; gpu?: unknown } | null;
  container_parameters?: { entry_point?: string[]; command?: string[]; workdir?: string; env_vars?: Record<string, string> } | null;
  image_uri?: string | null;
  docker_config?: { dockerfile?: string; context?: string } | null;
  inherits?: { name: string; digest?: string; owner?: string } | null;
  tags?: string[];
  metadata?: Record<string, Json>;
  timeout?: number | null;
  sync_actions?: string[];
  retry?: { count: number; interval_seconds: number } | null;
}

export interface ActionRecord {
  name: string;
  version: number;
  digest: string;
  created_at: string;
  spec: ActionSpec;
}

export type Status = "ENQUEUED" | "INPROGRESS" | "SUCCESSFUL" | "FAILED" | "TERMINATING" | "TERMINATED";
export const STATUSES: Status[] = ["ENQUEUED", "INPROGRESS", "SUCCESSFUL", "FAILED", "TERMINATING", "TERMINATED"];
export const TERMINAL = new Set<string>(["SUCCESSFUL", "FAILED", "TERMINATED"]);

export interface LogEntry {
  seq: number;
  k: string;
  ts: number;
  msg: string;
  err?: { name?: string; message?: string; stack?: string };
}

export interface Run {
  id: string;
  project_id: string;
  environment: string;
  action: { name: string; version: number; digest: string };
  invoked: string;
  mode: "async" | "sync";
  status: Status;
  status_reason: string | null;
  attempt: number;
  max_attempts: number;
  parameters: Record<string, Json>;
  ret: Json;
  exports: Record<string, Json>;
  os: LogEntry[];
  error: { kind?: string; message?: string; exception_id?: string; exceptionId?: string; code?: number } | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  external_user_id: string | null;
}

export interface SyncAnswer {
  run_id: string;
  status: string;
  ret: Json;
  exports: Record<string, Json>;
  os: LogEntry[];
  duration_ms: number | null;
}

export interface Stats {
  window: "hour" | "day";
  since: string;
  until: string;
  bucket_seconds: number;
  statuses: Status[];
  buckets: { start: string; counts: Partial<Record<Status, number>> }[];
  totals: Record<Status, number>;
  durations: { action: string; invoked: string; count: number; failed: number; p50_ms: number | null; p95_ms: number | null; max_ms: number }[];
  error_rates: { action: string; invoked: string; finished: number; failed: number; error_rate: number }[];
  queue: { enqueued: number; in_progress: number; terminating: number };
  workers: { size: number; busy: number } | null;
  truncated: boolean;
}

/** Where the API lives: the console is served at <base>/ui/, also behind an API Gateway stage. */
export function apiBase(): string {
  return location.pathname.replace(/\/ui(\/.*)?$/, "");
}

export function projectPath(session: Session, rest = ""): string {
  return `/v1/projects/${encodeURIComponent(session.project)}${rest}`;
}

let onNetwork: (online: boolean) => void = () => {};
export function watchNetwork(callback: (online: boolean) => void): void {
  onNetwork = callback;
}

export interface CallOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined | null>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export async function call<T>(session: Session, method: string, path: string, options: CallOptions = {}): Promise<T> {
  const url = new URL(apiBase() + path, location.origin);
  for (const [key, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  const headers: Record<string, string> = {
    Accept: "application/json",
    Authorization: `Bearer ${session.token}`,
    "X-Hatchway-Environment": session.environment,
    ...options.headers,
  };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
      signal: options.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    onNetwork(false);
    throw new ApiError(0, { error: "Offline", code: 0, message: "The gateway cannot be reached." });
  }
  onNetwork(true);
  const text = await response.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const body = (data && typeof data === "object" ? data : {}) as Partial<ErrorBody>;
    throw new ApiError(response.status, {
      ...body,
      error: body.error ?? response.statusText ?? "Error",
      code: body.code ?? response.status,
      message: body.message ?? `The gateway answered ${response.status}.`,
    });
  }
  return data as T;
}

/** Every page of a list (bounded), following `next`. */
export async function all<T>(session: Session, path: string, query: CallOptions["query"] = {}, max = 500): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await call<Page<T>>(session, "GET", path, { query: { ...query, limit: 200, cursor } });
    items.push(...page.items);
    cursor = page.next;
  } while (cursor && items.length < max);
  return items;
}

export function newIdempotencyKey(): string {
  return typeof crypto.randomUUID === "function"
    ? crypto.randomUUID()
    : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
