// Build the console into ../hatchway/ui (package data): hashed bundles, index.html, licences,
// and build-info.json whose sources_sha256 lets a test without Node check the build is current.
import { createHash } from "node:crypto";
import { readdir, readFile, rm, mkdir, writeFile, copyFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = join(here, "..", "hatchway", "ui");

async function walk(dir) {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = await Promise.all(entries.map((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)])));
  return files.flat();
}

// Keep this list and its hashing in step with tests/unit/test_console_assets.py.
export async function sourceFiles() {
  const fixed = ["build.mjs", "index.html", "icon.svg", "package.json", "package-lock.json", "tsconfig.json"];
  const src = (await walk(join(here, "src"))).map((f) => relative(here, f).split(sep).join("/"));
  return [...fixed, ...src].sort();
}

export async function sourcesSha256() {
  const hash = createHash("sha256");
  for (const name of await sourceFiles()) {
    const data = await readFile(join(here, name));
    hash.update(`${name}\n${data.length}\n`);
    hash.update(data);
  }
  return hash.digest("hex");
}

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.tsx", styles: "src/styles.css" },
  outdir: out,
  entryNames: "[name]-[hash]",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  define: { "process.env.NODE_ENV": '"production"' },
  metafile: true,
  logLevel: "warning",
});
const outputs = Object.keys(result.metafile.outputs).map((p) => p.split("/").pop());
const app = outputs.find((n) => n.startsWith("app-") && n.endsWith(".js"));
const styles = outputs.find((n) => n.startsWith("styles-") && n.endsWith(".css"));
const html = (await readFile(join(here, "index.html"), "utf8")).replace("%APP%", app).replace("%STYLES%", styles);
await writeFile(join(out, "index.html"), html);
await copyFile(join(here, "icon.svg"), join(out, "icon.svg"));

const licences = [];
for (const pkg of ["preact", "chart.js", "@kurkle/color"]) {
  const meta = JSON.parse(await readFile(join(here, "node_modules", pkg, "package.json"), "utf8"));
  const text = await readFile(join(here, "node_modules", pkg, "LICENSE.md")).catch(() =>
    readFile(join(here, "node_modules", pkg, "LICENSE")),
  );
  licences.push(`${pkg} ${meta.version} (${meta.license})\n\n${text.toString().trim()}\n`);
}
await writeFile(join(out, "THIRD_PARTY_LICENSES.txt"), licences.join("\n" + "-".repeat(72) + "\n\n"));

const info = {
  sources_sha256: await sourcesSha256(),
  files: [app, styles, "index.html", "icon.svg", "THIRD_PARTY_LICENSES.txt"],
  esbuild: esbuild.version,
};
await writeFile(join(out, "build-info.json"), JSON.stringify(info, null, 2) + "\n");
console.log(`console built into ${relative(process.cwd(), out)}: ${info.files.join(", ")}`);
