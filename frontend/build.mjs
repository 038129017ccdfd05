// Bundles src/ into ../cloud_collector/dashboard/static (committed: the product needs no Node).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "cloud_collector", "dashboard", "static");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, "src", "main.js"), join(here, "src", "style.css")],
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  target: ["es2020"],
  outdir: out,
  entryNames: "[name]",
  loader: { ".png": "dataurl", ".svg": "dataurl" },
  // MapLibre's module finds its worker through import.meta.url, empty in this bundle:
  // map.js names the worker's URL itself (setWorkerUrl).
  logOverride: { "empty-import-meta": "silent" },
  logLevel: "info",
});
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
// MapLibre's worker, as shipped (already minified, its licence on top), without the
// pointer to a source map that is not copied.
const worker = readFileSync(join(here, "node_modules", "maplibre-gl", "dist", "maplibre-gl-worker.mjs"), "utf8");
writeFileSync(join(out, "maplibre-gl-worker.js"), worker.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n"));
