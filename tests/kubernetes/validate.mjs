// Validates Kubernetes manifests offline against the Kubernetes API schema:
//   - every document parses as YAML (duplicate keys are errors) and names an apiVersion and
//     kind that the API has;
//   - the object validates against that kind's OpenAPI schema (kubernetes-models: types,
//     required fields, formats, enums);
//   - it has no field the API does not know (the API's field lists, from
//     @kubernetes/client-node's generated models), as `kubectl apply --validate=strict` would
//     refuse: a misspelt `hostPid` would otherwise pass the schema and be dropped silently.
// Usage: node validate.mjs FILE...   Exit 0: all valid; 1: a document is invalid (each
// problem printed as FILE: document N (KIND NAME): PATH: MESSAGE); 2: bad usage.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import * as api from "@kubernetes/client-node/dist/gen/models/all.js";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}

// The client-node model class of apiVersion/kind: V1DaemonSet, V1RuntimeClass, ...
function modelClass(apiVersion, kind) {
  const version = apiVersion.includes("/") ? apiVersion.split("/")[1] : apiVersion;
  const name = version.charAt(0).toUpperCase() + version.slice(1) + kind;
  return api[name];
}

// Field names the API does not know, below `path`.
function unknownFields(value, type, path, out) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, m[1], `${path}/${i}`, out));
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
    if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) unknownFields(v, m[1], `${path}/${k}`, out);
    }
    return;
  }
  const cls = api[type];
  if (typeof cls !== "function" || typeof cls.getAttributeTypeMap !== "function") return;
  if (typeof value !== "object" || Array.isArray(value)) return;  // the schema check says so
  const fields = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) {
      out.push(`${path}/${k}: unknown field "${k}" (${type} has ${[...fields.keys()].join(", ")})`);
    } else {
      unknownFields(v, fields.get(k), `${path}/${k}`, out);
    }
  }
}

let bad = 0;
let count = 0;
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    bad++;
    continue;
  }
  let n = 0;
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    n++;
    const where = `${file}: document ${n}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) console.error(`${where}: YAML: ${e.message}`);
      bad++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue;  // an empty document
    if (typeof obj !== "object" || typeof obj.apiVersion !== "string" ||
        typeof obj.kind !== "string") {
      console.error(`${where}: not a Kubernetes object (apiVersion and kind are required)`);
      bad++;
      continue;
    }
    const label = `${where} (${obj.kind} ${obj.metadata?.name ?? "?"})`;
    let Model;
    try {
      Model = (await import(`kubernetes-models/${obj.apiVersion}/${obj.kind}`))[obj.kind];
    } catch {
      Model = undefined;
    }
    const Strict = modelClass(obj.apiVersion, obj.kind);
    if (typeof Model !== "function" || typeof Strict !== "function") {
      console.error(`${label}: the Kubernetes API has no kind ${obj.kind} in ${obj.apiVersion}`);
      bad++;
      continue;
    }
    const problems = [];
    try {
      new Model(obj).validate();
    } catch (e) {
      for (const err of e.errors ?? [{ instancePath: "", message: e.message }]) {
        const params = err.params ? " " + JSON.stringify(err.params) : "";
        problems.push(`${err.instancePath || "/"}: ${err.message}${params}`);
      }
    }
    unknownFields(obj, Strict.name, "", problems);
    if (typeof obj.metadata?.name !== "string") problems.push("/metadata/name: required");
    for (const p of problems) console.error(`${label}: ${p}`);
    if (problems.length > 0) bad++;
    count++;
  }
}
if (bad > 0) {
  console.error(`validate: ${bad} invalid document(s)`);
  process.exit(1);
}
console.log(`validate: ${count} object(s) valid`);
