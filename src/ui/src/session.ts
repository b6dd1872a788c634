// The signed-in session lives in this tab's sessionStorage only: never a cookie (so no CSRF),
// never a URL, gone when the tab closes.
export interface Session {
  token: string;
  project: string;
  environment: string;
}

const KEY = "hatchway.session";

export function loadSession(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const value = JSON.parse(raw) as Partial<Session>;
    if (typeof value.token === "string" && typeof value.project === "string" && typeof value.environment === "string") {
      return { token: value.token, project: value.project, environment: value.environment };
    }
  } catch {
    // unreadable storage: act as signed out
  }
  return null;
}

export function saveSession(session: Session | null): void {
  if (session) sessionStorage.setItem(KEY, JSON.stringify(session));
  else sessionStorage.removeItem(KEY);
}
