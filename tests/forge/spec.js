// GitHub's REST API description (npm `@octokit/openapi`, the `api.github.com` document) and
// checks of requests and responses against it.
//
// Only the one document is read (13 MB, ~100 ms); the package's index.js would load all ten
// (400 MB). Schemas are compiled lazily, per operation, the first time a request needs them.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const require = createRequire(import.meta.url);
const specDir = path.join(path.dirname(require.resolve("@octokit/openapi/package.json")), "generated");

export const spec = JSON.parse(readFileSync(path.join(specDir, "api.github.com.json"), "utf8"));
export const specVersion = JSON.parse(
  readFileSync(require.resolve("@octokit/openapi/package.json"), "utf8"),
).version;

const COMPONENTS_ID = "github-components";

/**
 * OpenAPI 3.0's `nullable: true` as JSON Schema: ajv knows the keyword but refuses it beside
 * `allOf`/`anyOf`/`$ref` without `type`, which GitHub's description has many of.
 */
function nullableToJsonSchema(node) {
  if (Array.isArray(node)) return node.map(nullableToJsonSchema);
  if (!node || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) out[k] = nullableToJsonSchema(v);
  if (out.nullable !== true) return out;
  delete out.nullable;
  if (typeof out.type === "string" && !out.allOf && !out.anyOf && !out.oneOf && !out.$ref) {
    out.type = [out.type, "null"];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    return out;
  }
  if (Object.keys(out).length === 0) return out;
  return { anyOf: [out, { type: "null" }] };
}
const jsonSchemaComponents = nullableToJsonSchema(spec.components);

// OpenAPI 3.0 schemas: `nullable`, `example`, `x-github` and friends. Ajv knows `nullable`;
// the rest are annotations, hence strict: false. Formats GitHub uses that ajv-formats does not
// know (e.g. `repo.nwo`) are ignored rather than failing the compilation.
function makeAjv(options) {
  const ajv = new Ajv({ strict: false, allErrors: true, logger: false, ...options });
  addFormats(ajv);
  ajv.addSchema({ components: jsonSchemaComponents }, COMPONENTS_ID);
  return ajv;
}
const bodyAjv = makeAjv({});
const paramAjv = makeAjv({ coerceTypes: "array" });

/** A deep copy of `schema` whose `#/components/...` references point into the components. */
function rebase(schema) {
  return rebaseRefs(nullableToJsonSchema(schema));
}
function rebaseRefs(schema) {
  if (Array.isArray(schema)) return schema.map(rebase);
  if (schema && typeof schema === "object") {
    const out = {};
    for (const [k, v] of Object.entries(schema)) {
      out[k] = k === "$ref" && typeof v === "string" && v.startsWith("#/") ? COMPONENTS_ID + v : rebaseRefs(v);
    }
    return out;
  }
  return schema;
}

/** Follows a local `$ref` (`#/components/...`) inside the document, once or repeatedly. */
export function deref(node) {
  let seen = 0;
  while (node && typeof node.$ref === "string") {
    if (++seen > 20) throw new Error(`reference loop at ${node.$ref}`);
    node = node.$ref
      .slice(2)
      .split("/")
      .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
      .reduce((n, key) => n?.[key], spec);
  }
  return node;
}

// Path templates, most literal segments first, so that `/repos/{owner}/{repo}/installation`
// wins over a template with a parameter in its last segment.
const routes = Object.keys(spec.paths)
  .map((template) => {
    const segments = template.split("/").slice(1);
    const names = [];
    const pattern = segments
      .map((s) => {
        const m = /^\{([^}]+)\}$/.exec(s);
        if (m) {
          names.push(m[1]);
          return "([^/]+)";
        }
        return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      })
      .join("/");
    return {
      template,
      names,
      regex: new RegExp(`^/${pattern}$`),
      literals: segments.filter((s) => !s.startsWith("{")).length,
      length: segments.length,
    };
  })
  .sort((a, b) => b.literals - a.literals || b.length - a.length);

/** The spec's path template for a concrete path, with its decoded path parameters. */
export function matchRoute(pathname) {
  for (const r of routes) {
    const m = r.regex.exec(pathname);
    if (!m) continue;
    const params = {};
    try {
      r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1])));
    } catch {
      return { template: r.template, params: null };
    }
    return { template: r.template, params };
  }
  return null;
}

const compiled = new Map();
function compile(ajv, key, schema) {
  const cacheKey = `${ajv === bodyAjv ? "b" : "p"}:${key}`;
  if (!compiled.has(cacheKey)) compiled.set(cacheKey, ajv.compile(rebase(schema)));
  return compiled.get(cacheKey);
}

function describe(errors, where, param = false) {
  return (errors ?? []).map((e) => `${where}${(param ? e.instancePath.replace(/^\/v/, "") : e.instancePath) || ""} ${e.message}${e.params?.allowedValues ? ` (${e.params.allowedValues.join(", ")})` : ""}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`);
}

/**
 * Checks a request against the operation the spec declares for it. Returns
 * `{ route, operation, params, violations }`; `violations` is empty when the request is one
 * the spec allows.
 */
export function checkRequest({ method, pathname, query, headers, rawBody }) {
  const violations = [];
  const match = matchRoute(pathname);
  if (!match) {
    return { route: null, violations: [`no path in the GitHub REST API matches ${pathname}`] };
  }
  if (!match.params) {
    return { route: match.template, violations: [`a path parameter of ${pathname} is not valid percent-encoding`] };
  }
  const item = spec.paths[match.template];
  const operation = item[method.toLowerCase()];
  if (!operation) {
    const allowed = Object.keys(item).filter((k) => ["get", "put", "post", "delete", "patch", "head"].includes(k));
    return {
      route: match.template,
      violations: [`${method} is not an operation of ${match.template} (the spec has ${allowed.map((m) => m.toUpperCase()).join(", ")})`],
    };
  }
  const params = [...(item.parameters ?? []), ...(operation.parameters ?? [])].map(deref);
  const values = { path: match.params, query: {} };
  for (const p of params.filter((p) => p.in === "path")) {
    const v = compile(paramAjv, `${operation.operationId}:path:${p.name}`, { type: "object", properties: { v: p.schema ?? {} } });
    const data = { v: match.params[p.name] };
    if (!v(data)) violations.push(...describe(v.errors, `path parameter ${p.name}`, true));
    else values.path[p.name] = data.v;
  }
  const declaredQuery = new Set();
  for (const p of params.filter((p) => p.in === "query")) {
    declaredQuery.add(p.name);
    const present = Object.prototype.hasOwnProperty.call(query, p.name);
    if (!present) {
      if (p.required) violations.push(`query parameter ${p.name} is required`);
      continue;
    }
    const v = compile(paramAjv, `${operation.operationId}:query:${p.name}`, { type: "object", properties: { v: p.schema ?? {} } });
    const raw = query[p.name];
    const data = { v: raw };
    if (Array.isArray(raw) && p.schema?.type !== "array") {
      violations.push(`query parameter ${p.name} is given ${raw.length} times`);
      continue;
    }
    if (!v(data)) violations.push(...describe(v.errors, `query parameter ${p.name}`, true));
    else values.query[p.name] = data.v;
  }
  for (const name of Object.keys(query)) {
    if (!declaredQuery.has(name)) violations.push(`query parameter ${name} is not declared for ${method} ${match.template}`);
  }

  let body;
  const hasBody = rawBody.length > 0;
  const requestBody = deref(operation.requestBody);
  if (hasBody) {
    const type = (headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (type && type !== "application/json" && !type.endsWith("+json")) {
      violations.push(`the request body's Content-Type is ${type}, not application/json`);
    }
    try {
      body = JSON.parse(rawBody.toString("utf8"));
    } catch (e) {
      violations.push(`the request body is not JSON: ${e.message}`);
    }
    if (!requestBody) {
      violations.push(`${method} ${match.template} takes no request body`);
    } else if (body !== undefined) {
      const schema = requestBody.content?.["application/json"]?.schema;
      if (schema) {
        const v = compile(bodyAjv, `${operation.operationId}:body`, schema);
        if (!v(body)) violations.push(...describe(v.errors, "request body"));
      }
    }
  } else if (requestBody?.required) {
    violations.push(`${method} ${match.template} requires a JSON request body`);
  }
  return { route: match.template, operation, params: values, body, violations };
}

/** The declared response for `status` (or `default`) of an operation. */
function declaredResponse(operation, status) {
  return deref(operation.responses?.[String(status)] ?? operation.responses?.default);
}

/** Checks a JSON response body against the operation's declared response schema. */
export function checkResponse(operation, status, body) {
  const response = declaredResponse(operation, status);
  if (!response) return [`the spec declares no ${status} response for ${operation.operationId}`];
  const schema = response.content?.["application/json"]?.schema;
  if (!schema) return body === undefined ? [] : [`the spec declares no JSON body for ${status} of ${operation.operationId}`];
  const v = compile(bodyAjv, `${operation.operationId}:response:${status}`, schema);
  return v(body) ? [] : describe(v.errors, `response ${status} body`);
}

/** A deep copy of the spec's (first) example of an operation's response. */
export function example(route, method, status) {
  const operation = spec.paths[route]?.[method];
  const content = declaredResponse(operation, status)?.content?.["application/json"];
  if (!content) throw new Error(`no JSON ${status} response for ${method} ${route}`);
  const examples = content.examples ?? {};
  const first = examples.default ?? Object.values(examples)[0];
  const value = first ? deref(first).value : content.example;
  if (value === undefined) throw new Error(`no example for ${status} of ${method} ${route}`);
  return structuredClone(value);
}
