// The console's shell: sign-in, the header with navigation and the project/environment switcher,
// the offline banner, and the page for the current hash route.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, all, call, projectPath, watchNetwork } from "./api";
import { href, navigate, useRoute } from "./router";
import { loadSession, saveSession, type Session } from "./session";
import { Ctx, ErrorBox, PageTitle, usePoll } from "./util";
import { Dashboard } from "./pages/dashboard";
import { ActionList, ActionPage } from "./pages/actions";
import { RunList, RunPage } from "./pages/runs";
import { PipelineList, PipelinePage, ExecutionPage } from "./pages/pipelines";

const PROJECT_RE = /^proj_[a-zA-Z0-9]+$/;
const ENV_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

interface Project {
  id: string;
  name: string;
}

async function verify(session: Session): Promise<void> {
  await call(session, "GET", projectPath(session));
}

function describe(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401) return "The gateway does not know this token (or it expired).";
    if (err.status === 403) return `This token may not use ${"that project or environment"}: ${err.body.message}`;
    if (err.status === 404) return "No such project.";
    return err.body.message;
  }
  return String(err);
}

function SignIn({ onSignedIn, notice }: { onSignedIn: (s: Session) => void; notice?: string }) {
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const session: Session = {
      token: String(form.get("token") ?? "").trim(),
      project: String(form.get("project") ?? "").trim(),
      environment: String(form.get("environment") ?? "").trim() || "development",
    };
    if (session.project && !PROJECT_RE.test(session.project)) return setError("A project id looks like proj_local.");
    if (!ENV_RE.test(session.environment)) return setError("An environment is lowercase letters, digits, '_' and '-'.");
    setBusy(true);
    setError(undefined);
    try {
      if (!session.project) {
        // no project given: the first the token can see (a project token's own)
        const first = await call<{ items: Project[] }>(session, "GET", "/v1/projects", { query: { limit: 1 } });
        if (!first.items.length) return setError("This token can see no project.");
        session.project = first.items[0].id;
      }
      await verify(session);
      onSignedIn(session);
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <PageTitle title="Sign in">Sign in to hatchway</PageTitle>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <form onSubmit={submit} class="stack" aria-describedby="signin-help">
        <div class="field">
          <label for="token">Token</label>
          <input id="token" name="token" type="password" autocomplete="off" spellcheck={false} required />
        </div>
        <div class="field">
          <label for="project">Project</label>
          <input id="project" name="project" defaultValue="proj_local" pattern="proj_[a-zA-Z0-9]+" aria-describedby="project-hint" />
          <p class="hint" id="project-hint">
            Empty: the first project the token can see (a project token's own).
          </p>
        </div>
        <div class="field">
          <label for="environment">Environment</label>
          <input id="environment" name="environment" defaultValue="development" list="environments" required />
        </div>
        <datalist id="environments">
          <option value="development" />
          <option value="production" />
        </datalist>
        {error && (
          <p class="error-box" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
      <p id="signin-help" class="muted">
        The token stays in this browser tab only (session storage) and is sent to the gateway as an Authorization
        header, never in a URL or a cookie. The admin token of a local gateway is in <code>~/.hatchway/token</code>.
      </p>
    </main>
  );
}

/** The project (a picker fed by GET /v1/projects: the projects this token can see) and the
 * environment. A gateway without that list gets a text field instead. */
function Switcher({ session, onSwitch }: { session: Session; onSwitch: (s: Session) => void }) {
  const [error, setError] = useState<string | undefined>();
  const projects = usePoll(() => all<Project>(session, "/v1/projects", {}, 1000), [session.token]);
  const listed = projects.data && projects.data.length > 0 ? projects.data : null;
  const choices = listed && !listed.some((p) => p.id === session.project) ? [{ id: session.project, name: session.project }, ...listed] : listed;
  const switchTo = async (next: Session) => {
    if (!PROJECT_RE.test(next.project) || !ENV_RE.test(next.environment)) return setError("Check the project and environment.");
    try {
      await verify(next);
      setError(undefined);
      onSwitch(next);
    } catch (err) {
      setError(describe(err));
    }
  };
  const submit = (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    void switchTo({ ...session, project: String(form.get("project")).trim(), environment: String(form.get("environment")).trim() });
  };
  return (
    <form class="switcher" onSubmit={submit} aria-label="Project and environment">
      <label>
        <span>Project</span>
        {choices ? (
          <select
            name="project"
            aria-label="Project"
            value={session.project}
            key={session.project}
            onChange={(e) => void switchTo({ ...session, project: e.currentTarget.value })}
          >
            {choices.map((p) => (
              <option value={p.id}>{p.name === p.id ? p.id : `${p.name} · ${p.id}`}</option>
            ))}
          </select>
        ) : (
          <input name="project" defaultValue={session.project} key={session.project} size={14} required />
        )}
      </label>
      <label>
        <span>Environment</span>
        <input name="environment" defaultValue={session.environment} key={session.environment} list="environments" size={11} required />
      </label>
      <datalist id="environments">
        <option value="development" />
        <option value="production" />
      </datalist>
      <button type="submit">Switch</button>
      {error && (
        <span class="switch-error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}

function NotFoundPage() {
  return (
    <>
      <PageTitle title="Not found">Nothing here</PageTitle>
      <p>
        This page does not exist. Go to the <a href={href([])}>dashboard</a>.
      </p>
    </>
  );
}

function Page({ parts, query, hasPipelines }: { parts: string[]; query: URLSearchParams; hasPipelines: boolean }) {
  const [section, id, sub, subId] = parts;
  if (!section) return <Dashboard />;
  if (section === "actions") return id ? <ActionPage name={id} query={query} /> : <ActionList query={query} />;
  if (section === "runs") return id ? <RunPage id={id} key={id} /> : <RunList query={query} />;
  if (section === "pipelines" && hasPipelines) {
    if (!id) return <PipelineList />;
    if (sub === "executions" && subId) return <ExecutionPage pipeline={id} id={subId} />;
    return <PipelinePage name={id} />;
  }
  return <NotFoundPage />;
}

function App() {
  const [session, setSessionState] = useState<Session | null>(loadSession);
  const [notice, setNotice] = useState<string | undefined>();
  const [online, setOnline] = useState(true);
  const [hasPipelines, setHasPipelines] = useState(false);
  const [menuOpen, setMenuOpen] = useState(false);
  const menuButton = useRef<HTMLButtonElement>(null);
  const route = useRoute();
  // on a phone the header's menu closes once the user has gone somewhere
  useEffect(() => setMenuOpen(false), [route.parts.join("/"), session?.project, session?.environment]);

  useEffect(() => {
    watchNetwork(setOnline);
    const update = () => setOnline(navigator.onLine);
    window.addEventListener("online", update);
    window.addEventListener("offline", update);
    return () => {
      window.removeEventListener("online", update);
      window.removeEventListener("offline", update);
    };
  }, []);

  // Pipelines appear when the gateway has them (GET .../pipelines answers); an older gateway 404s.
  useEffect(() => {
    if (!session) return;
    let stopped = false;
    call(session, "GET", projectPath(session, "/pipelines"), { query: { limit: 1 } })
      .then(() => !stopped && setHasPipelines(true))
      .catch(() => !stopped && setHasPipelines(false));
    return () => {
      stopped = true;
    };
  }, [session?.token, session?.project, session?.environment]);

  const setSession = (next: Session) => {
    saveSession(next);
    setSessionState(next);
    setNotice(undefined);
  };
  const signOut = (message?: string) => {
    saveSession(null);
    setSessionState(null);
    setNotice(message);
  };

  const banner = !online && (
    <div class="offline" role="status">
      The gateway cannot be reached; the console keeps trying.
    </div>
  );
  if (!session) {
    return (
      <>
        {banner}
        <SignIn
          notice={notice}
          onSignedIn={(s) => {
            setSession(s);
            if (location.hash === "" || location.hash === "#/signin") navigate(href([]), true);
          }}
        />
      </>
    );
  }
  const current = route.parts[0] ?? "";
  const nav = [
    { key: "", label: "Dashboard" },
    { key: "actions", label: "Actions" },
    { key: "runs", label: "Runs" },
    ...(hasPipelines ? [{ key: "pipelines", label: "Pipelines" }] : []),
  ];
  return (
    <Ctx.Provider value={{ session, signOut, setSession, hasPipelines }}>
      <a
        class="skip-link"
        href="#main"
        onClick={(e) => {
          e.preventDefault();
          document.getElementById("main")?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href([])}>
          <img src="icon.svg" alt="" width={24} height={24} />
          <span>hatchway</span>
        </a>
        <button
          type="button"
          class="menu-toggle"
          ref={menuButton}
          aria-expanded={menuOpen}
          aria-controls="top-menu"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          {menuOpen ? "Close menu" : "Menu"}
        </button>
        <div
          id="top-menu"
          class={menuOpen ? "top-menu open" : "top-menu"}
          onKeyDown={(e) => {
            if (e.key === "Escape" && menuOpen) {
              setMenuOpen(false);
              menuButton.current?.focus();
            }
          }}
        >
          <nav aria-label="Main">
            <ul>
              {nav.map((item) => (
                <li>
                  <a href={href(item.key ? [item.key] : [])} aria-current={current === item.key ? "page" : undefined}>
                    {item.label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
          <Switcher
            session={session}
            onSwitch={(s) => {
              setSession(s);
              navigate(href(current ? [current] : []));
            }}
          />
          <button type="button" class="signout" onClick={() => signOut("Signed out.")}>
            Sign out
          </button>
        </div>
      </header>
      {banner}
      <main id="main" tabIndex={-1} key={`${session.project}/${session.environment}`}>
        <Page parts={route.parts} query={route.query} hasPipelines={hasPipelines} />
      </main>
    </Ctx.Provider>
  );
}

export { ErrorBox };
render(<App />, document.getElementById("app")!);
