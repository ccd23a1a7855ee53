// Validate custom resources against the types their own projects publish.
//
// kubernetes-validate knows the built-in kinds only. The custom resources wsfleet
// ships (Gateway API HTTPRoute, Traefik IngressRoute, KEDA ScaledObject, Prometheus
// Operator ServiceMonitor) are checked here with the @kubernetes-models packages of
// the npm registry, which are generated from each project's Go API types (the same
// types their CRDs are generated from), pinned by package-lock.json:
//
//   1. each object through the package's JSON-schema validator (types, enums,
//      required fields, patterns);
//   2. strictly: every object as a TypeScript object literal of the package's
//      interface, compiled with tsc, whose excess-property check rejects any field
//      the type does not have (a typo that an API server would drop or refuse).
//
// Usage: node validate.mjs INSTALL_DIR OBJECTS.json
//   INSTALL_DIR: where `npm ci` installed this package (holds node_modules/);
//   OBJECTS.json: [{"source": "where it came from", "object": {...}}, ...].
// Prints one line per object (OK or ERROR) and exits 1 if any object fails.

import { writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";

// apiVersion group -> npm package holding its models.
const PACKAGES = {
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "traefik.io": "@kubernetes-models/traefik",
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) return null;
  return `${pkg}/${group}/${version}/${kind}`;
}

async function main() {
  const [installDir, objectsFile] = process.argv.slice(2);
  if (!installDir || !objectsFile) {
    console.error("usage: node validate.mjs INSTALL_DIR OBJECTS.json");
    process.exit(2);
  }
  const modules = join(installDir, "node_modules");
  const entries = JSON.parse(readFileSync(objectsFile, "utf8"));
  let failed = 0;
  const typed = [];

  for (const [index, { source, object }] of entries.entries()) {
    const name = `${object.kind}/${object.metadata?.name} (${object.apiVersion}) in ${source}`;
    const path = modelPath(object.apiVersion, object.kind);
    if (!path) {
      console.log(`ERROR ${name}: no published schema known for this kind`);
      failed++;
      continue;
    }
    let Model;
    try {
      const module = await import(pathToFileURL(join(modules, `${path}.js`)).href);
      Model = module[object.kind];
    } catch (error) {
      console.log(`ERROR ${name}: no model ${path} (${error.message})`);
      failed++;
      continue;
    }
    try {
      new Model(object).validate();
    } catch (error) {
      console.log(`ERROR ${name}: ${error.message}`);
      failed++;
      continue;
    }
    typed.push({ index, name, path, object });
  }

  // Strict: excess properties, through the TypeScript compiler.
  const ts = (await import(pathToFileURL(join(modules, "typescript/lib/typescript.js")).href)).default;
  const lines = [];
  const owner = []; // line number -> entry
  for (const [n, entry] of typed.entries()) {
    const iface = `I${entry.object.kind}`;
    lines.push(`import type { ${iface} as T${n} } from "${entry.path}";`);
    owner.push(null);
  }
  for (const [n, entry] of typed.entries()) {
    const text = `export const o${n}: T${n} = ${JSON.stringify(entry.object, null, 2)};`;
    for (const line of text.split("\n")) {
      lines.push(line);
      owner.push(entry);
    }
  }
  const file = join(installDir, `strict-check-${process.pid}.mts`);
  writeFileSync(file, lines.join("\n") + "\n");
  const strictFailures = new Map();
  try {
    const program = ts.createProgram([file], {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
      const line = d.file ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
      const entry = line >= 0 ? owner[line] : null;
      if (!entry) {
        console.log(`ERROR strict check could not run: ${message}`);
        failed++;
        continue;
      }
      const list = strictFailures.get(entry) ?? [];
      list.push(message);
      strictFailures.set(entry, list);
    }
  } finally {
    rmSync(file, { force: true });
  }
  for (const entry of typed) {
    const problems = strictFailures.get(entry);
    if (problems) {
      console.log(`ERROR ${entry.name}: ${problems.join("; ")}`);
      failed++;
    } else {
      console.log(`OK ${entry.name}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

await main();
