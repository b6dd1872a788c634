// Hash routes (#/runs/run_...): no server-side routing needed, and a stage prefix stays intact.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  parts: string[];
  query: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, "");
  const [path, search = ""] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map((p) => decodeURIComponent(p));
  return { parts, query: new URLSearchParams(search) };
}

export function href(parts: string[], query?: Record<string, string | undefined>): string {
  const path = "#/" + parts.map(encodeURIComponent).join("/");
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) if (value) search.set(key, value);
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

export function navigate(target: string, replace = false): void {
  if (replace) history.replaceState(null, "", target);
  else location.hash = target.replace(/^#/, "");
  if (replace) window.dispatchEvent(new HashChangeEvent("hashchange"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const update = () => setRoute(parseHash(location.hash));
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}
