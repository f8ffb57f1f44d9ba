// same-file A B: exits 1 (with a hint) when the two files differ; the
// check that src/schema.d.ts is what openapi-typescript makes of
// docs/openapi.yaml today.
import { readFileSync } from "node:fs";
const [a, b] = process.argv.slice(2);
if (readFileSync(a, "utf8") !== readFileSync(b, "utf8")) {
  console.error(`${a} is not what openapi-typescript generates from docs/openapi.yaml: run npm run generate in clients/typescript`);
  process.exit(1);
}
