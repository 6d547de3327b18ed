// Prints the gzipped size of every script the widget can load (dist/widget/*.js) and
// fails when the total is above the budget the issue sets: 60 KB gzipped.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = 60 * 1024;
const dir = new URL("../dist/widget/", import.meta.url).pathname;
let files;
try {
  files = readdirSync(dir).filter((f) => f.endsWith(".js")).sort();
} catch {
  console.error(`no ${dir}: run \`npm run build\` first`);
  process.exit(2);
}
let total = 0;
for (const f of files) {
  const raw = readFileSync(join(dir, f));
  const gz = gzipSync(raw, { level: 9 }).length;
  total += gz;
  console.log(`${f.padEnd(32)} ${String(raw.length).padStart(8)} B raw ${String(gz).padStart(8)} B gzip`);
}
const kb = (n) => (n / 1024).toFixed(1);
console.log(`total ${kb(total)} KB gzipped (budget ${kb(BUDGET)} KB)`);
if (total > BUDGET) {
  console.error("over budget");
  process.exit(1);
}
