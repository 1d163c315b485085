// Validate an AsyncAPI document with the official parser; exit 1 on any error-level diagnostic.
// Usage: node validate.mjs ../../docs/asyncapi.yaml   (tests/devtools/test_asyncapi.py runs it)
import { Parser, fromFile } from "@asyncapi/parser";

const path = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, path).parse();
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) console.log(`${["error", "warning", "info", "hint"][d.severity]} ${d.code} ${d.path.join("/")}: ${d.message}`);
if (errors.length || !document) process.exit(1);
console.log(`valid: ${path} (AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.messages().length} messages)`);
