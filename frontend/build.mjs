// Bundles src/ into ../cloud_collector/dashboard/static (committed: the product needs no Node).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
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
  logLevel: "info",
});
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
