#!/usr/bin/env node
// A local GitLab REST API (v4) for Kalandra's contract tests (see README.md beside this file).
//
//   node gitlab.js --scenario FILE --log FILE [--port N]
//
// Listens on 127.0.0.1:N (0: any free port) and prints `listening http://127.0.0.1:PORT` on
// stdout once it accepts connections. Every request to an operation of gitlab-api.json (a
// description written by hand from GitLab's documentation: GitLab publishes none a package
// registry serves) is checked against it; one that does not match is answered 400 and recorded
// as a contract violation. The server's own answers are checked against the declared response
// schemas too. Every request is appended to the log (JSON lines) before its answer is sent.
// The server exits when its standard input closes, so that it never outlives its test.

import { createServer } from "node:http";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const here = path.dirname(fileURLToPath(import.meta.url));
const spec = JSON.parse(readFileSync(path.join(here, "gitlab-api.json"), "utf8"));

function parseArgs(argv) {
  const args = { port: 0 };
  for (let i = 0; i < argv.length; i++) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === "--scenario") args.scenario = v;
    else if (k === "--log") args.log = v;
    else if (k === "--port") args.port = Number(v);
    else throw new Error(`unknown argument ${k}`);
    i++;
  }
  if (!args.scenario || !args.log) throw new Error("usage: gitlab.js --scenario FILE --log FILE [--port N]");
  return args;
}

const args = parseArgs(process.argv.slice(2));
const now = () => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------------------------------------
// The description: routes, and checks of requests and answers against it.

const COMPONENTS_ID = "gitlab-components";
function makeAjv(options) {
  // OpenAPI 3.0: `nullable` (ajv knows it beside `type`), `description`, `default`: strict off.
  const ajv = new Ajv({ strict: false, allErrors: true, logger: false, ...options });
  addFormats(ajv);
  ajv.addSchema({ components: spec.components }, COMPONENTS_ID);
  return ajv;
}
const bodyAjv = makeAjv({});
const paramAjv = makeAjv({ coerceTypes: true });

function rebase(schema) {
  if (Array.isArray(schema)) return schema.map(rebase);
  if (!schema || typeof schema !== "object") return schema;
  const out = {};
  for (const [k, v] of Object.entries(schema)) {
    out[k] = k === "$ref" && typeof v === "string" && v.startsWith("#/") ? COMPONENTS_ID + v : rebase(v);
  }
  return out;
}

function deref(node) {
  while (node && typeof node.$ref === "string") {
    node = node.$ref
      .slice(2)
      .split("/")
      .reduce((n, key) => n?.[key], spec);
  }
  return node;
}

const compiled = new Map();
function compile(ajv, key, schema) {
  const cacheKey = `${ajv === bodyAjv ? "b" : "p"}:${key}`;
  if (!compiled.has(cacheKey)) compiled.set(cacheKey, ajv.compile(rebase(schema)));
  return compiled.get(cacheKey);
}

function describe(errors, where) {
  return (errors ?? []).map(
    (e) =>
      `${where}${e.instancePath.replace(/^\/v/, "")} ${e.message}` +
      `${e.params?.allowedValues ? ` (${e.params.allowedValues.join(", ")})` : ""}` +
      `${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`,
  );
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
// Most literal segments first. `loose` lets a parameter span several segments: a full path
// given unencoded (`/groups/platform/tools/projects`), which GitLab would not find.
const routes = Object.keys(spec.paths)
  .map((template) => {
    const segments = template.split("/").slice(1);
    const names = [];
    const build = (param) =>
      segments
        .map((s) => {
          const m = /^\{([^}]+)\}$/.exec(s);
          if (!m) return escapeRe(s);
          if (param === "([^/]+)") names.push(m[1]);
          return param;
        })
        .join("/");
    const regex = new RegExp(`^/${build("([^/]+)")}$`);
    const loose = new RegExp(`^/${build("(.+)")}$`);
    return {
      template,
      names,
      regex,
      loose,
      trailingParam: segments[segments.length - 1].startsWith("{"),
      literals: segments.filter((s) => !s.startsWith("{")).length,
    };
  })
  .sort((a, b) => b.literals - a.literals);

/** The description's path template for a path (still percent-encoded), with decoded params. */
function matchRoute(pathname) {
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
  for (const r of routes) {
    const m = r.loose.exec(pathname);
    if (m && unencodedPath(r, m[1])) return { template: r.template, params: null, unencoded: true };
  }
  return null;
}

/**
 * Whether `captured` (what a loose parameter took) is a full path given unencoded rather than
 * an id followed by an operation the description lacks (`/projects/1/repository/branches`,
 * which is only unimplemented). With a literal after the parameter it is; with the parameter
 * last, only for projects, whose id is a number or a path with an encoded `/`.
 */
function unencodedPath(route, captured) {
  if (!route.trailingParam) return true;
  if (!route.template.startsWith("/api/v4/projects/")) return false;
  const first = captured.split("/")[0];
  return !/^\d+$/.test(first) && !/%2F/i.test(first);
}

const OPERATIONS = ["get", "put", "post", "delete", "patch", "head"];

/** `{ route, operation, params, body, violations }`, or null for a path not described. */
function checkRequest({ method, pathname, query, headers, rawBody }) {
  const match = matchRoute(pathname);
  if (!match) return null;
  const item = spec.paths[match.template];
  const operation = item[method.toLowerCase()];
  if (!operation) return { route: match.template, operation: null, violations: [] };
  if (match.unencoded) {
    return {
      route: match.template,
      operation,
      violations: [`${pathname}: a path parameter holds a '/': GitLab needs a full path URL-encoded (platform%2Ftools)`],
    };
  }
  if (!match.params) {
    return { route: match.template, operation, violations: [`a path parameter of ${pathname} is not valid percent-encoding`] };
  }
  const violations = [];
  const params = [...(item.parameters ?? []), ...(operation.parameters ?? [])].map(deref);
  const values = { path: { ...match.params }, query: {} };
  for (const p of params.filter((p) => p.in === "path")) {
    const v = compile(paramAjv, `${operation.operationId}:path:${p.name}`, { type: "object", properties: { v: p.schema ?? {} } });
    if (!v({ v: match.params[p.name] })) violations.push(...describe(v.errors, `path parameter ${p.name}`));
  }
  const declared = new Set();
  for (const p of params.filter((p) => p.in === "query")) {
    declared.add(p.name);
    if (!Object.prototype.hasOwnProperty.call(query, p.name)) {
      if (p.required) violations.push(`query parameter ${p.name} is required`);
      continue;
    }
    const raw = query[p.name];
    if (Array.isArray(raw)) {
      violations.push(`query parameter ${p.name} is given ${raw.length} times`);
      continue;
    }
    const v = compile(paramAjv, `${operation.operationId}:query:${p.name}`, { type: "object", properties: { v: p.schema ?? {} } });
    const data = { v: raw };
    if (!v(data)) violations.push(...describe(v.errors, `query parameter ${p.name}`));
    else values.query[p.name] = data.v;
  }
  for (const name of Object.keys(query)) {
    if (!declared.has(name)) violations.push(`query parameter ${name} is not declared for ${method} ${match.template}`);
  }
  let body;
  const requestBody = deref(operation.requestBody);
  if (rawBody.length) {
    const type = (headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/json") {
      violations.push(`the request body's Content-Type is ${type || "missing"}, not application/json`);
    }
    try {
      body = JSON.parse(rawBody.toString("utf8"));
    } catch (e) {
      violations.push(`the request body is not JSON: ${e.message}`);
    }
    if (!requestBody) {
      violations.push(`${method} ${match.template} takes no request body`);
    } else if (body !== undefined) {
      const v = compile(bodyAjv, `${operation.operationId}:body`, requestBody.content["application/json"].schema);
      if (!v(body)) violations.push(...describe(v.errors, "request body"));
    }
  } else if (requestBody?.required) {
    violations.push(`${method} ${match.template} requires a JSON request body`);
  }
  return { route: match.template, operation, params: values, body, violations };
}

/** What is wrong with the server's own answer, by the declared response. */
function checkResponse(operation, status, body, headers) {
  const response = deref(operation.responses?.[String(status)]);
  if (!response) return [`the description declares no ${status} response for ${operation.operationId}`];
  const wrong = [];
  for (const [name, h0] of Object.entries(response.headers ?? {})) {
    const h = deref(h0);
    const value = headers[name];
    if (value === undefined) {
      if (h.required) wrong.push(`response ${status} lacks the header ${name}`);
    } else if (h.schema?.type === "integer" && !/^\d+$/.test(value)) {
      wrong.push(`response ${status} header ${name} is not an integer: ${JSON.stringify(value)}`);
    }
  }
  const schema = response.content?.["application/json"]?.schema;
  if (!schema) return wrong;
  const v = compile(bodyAjv, `${operation.operationId}:response:${status}`, schema);
  if (!v(body)) wrong.push(...describe(v.errors, `response ${status} body`));
  return wrong;
}

// ---------------------------------------------------------------------------------------------
// The scenario: groups, users, projects, tokens, memberships, faults.

let scenario;
let state;

const parentOf = (fullPath) => (fullPath.includes("/") ? fullPath.slice(0, fullPath.lastIndexOf("/")) : null);
const lastSegment = (fullPath) => fullPath.slice(fullPath.lastIndexOf("/") + 1);

function loadScenario(s) {
  const groups = (s.groups ?? []).map((g) => {
    if (g.id === undefined || !g.full_path) throw new Error("every group needs an id and a full_path");
    return {
      id: g.id,
      full_path: g.full_path,
      path: lastSegment(g.full_path),
      name: g.name ?? lastSegment(g.full_path),
      parent: g.parent ?? parentOf(g.full_path),
      visibility: g.visibility ?? "private",
    };
  });
  for (const g of groups) {
    if (g.parent && !groups.some((p) => p.full_path === g.parent)) throw new Error(`group ${g.full_path}: parent ${g.parent} is not a group of the scenario`);
  }
  const tokens = (s.tokens ?? []).map((t) => {
    if (!t.token) throw new Error("every token needs a token");
    const kind = t.kind ?? "personal";
    if (!["personal", "project", "group"].includes(kind)) throw new Error(`token kind ${kind}: personal, project or group`);
    if (kind === "group" && !t.group) throw new Error("a group token needs a group");
    if (kind === "project" && !t.project) throw new Error("a project token needs a project");
    const bot = kind === "group" ? `group_${t.group}_bot` : kind === "project" ? `project_${t.project}_bot` : null;
    return { scopes: ["api"], revoked: false, ...t, kind, user: t.user ?? bot ?? "mirror-bot" };
  });
  // Users own namespaces: those listed, and the users of personal tokens.
  const users = (s.users ?? []).map((u) => ({ id: u.id, username: u.username }));
  for (const t of tokens) {
    if (t.kind === "personal" && !users.some((u) => u.username === t.user)) {
      users.push({ id: 9000 + users.length, username: t.user });
    }
  }
  const isNamespace = (p) => groups.some((g) => g.full_path === p) || users.some((u) => u.username === p);
  const projects = (s.projects ?? []).map((p, index) => {
    if (!p.namespace || !p.path) throw new Error("every project needs a namespace and a path");
    if (!isNamespace(p.namespace)) throw new Error(`project ${p.namespace}/${p.path}: ${p.namespace} is not a group or user of the scenario`);
    const empty = p.empty_repo ?? false;
    return {
      id: p.id ?? 100 + index,
      namespace: p.namespace,
      path: p.path,
      name: p.name ?? p.path,
      description: p.description ?? null,
      visibility: p.visibility ?? "private",
      archived: p.archived ?? false,
      fork_of: p.fork_of ?? null,
      default_branch: empty ? null : (p.default_branch ?? "main"),
      empty_repo: empty,
      shared_into: p.shared_into ?? [],
      created: index,
    };
  });
  const unique = (what, values) => {
    const seen = new Set();
    for (const v of values) {
      if (seen.has(v)) throw new Error(`two ${what} are ${v}`);
      seen.add(v);
    }
  };
  unique("groups' ids", groups.map((g) => g.id));
  unique("groups' full paths", groups.map((g) => g.full_path));
  unique("projects' ids", projects.map((p) => p.id));
  unique("projects' full paths", projects.map((p) => `${p.namespace}/${p.path}`));
  unique("tokens", tokens.map((t) => t.token));
  scenario = { ...s, groups, users, projects, tokens, members: s.members ?? {}, faults: s.faults ?? {} };
  state = { rateLimited: 0, rateLimitMatched: 0, rateLimitReset: null, errorCounts: new Map() };
}

loadScenario(JSON.parse(readFileSync(args.scenario, "utf8")));

const fullPathOf = (p) => `${p.namespace}/${p.path}`;
const findGroup = (id) => scenario.groups.find((g) => (/^\d+$/.test(id) ? String(g.id) === id : g.full_path.toLowerCase() === id.toLowerCase()));
const findUser = (id) => scenario.users.find((u) => (/^\d+$/.test(id) ? String(u.id) === id : u.username.toLowerCase() === id.toLowerCase()));
const findProject = (id) =>
  scenario.projects.find((p) => (/^\d+$/.test(id) ? String(p.id) === id : fullPathOf(p).toLowerCase() === id.toLowerCase()));
/** Whether `path` is `root` or below it. */
const within = (path, root) => path === root || path.startsWith(`${root}/`);

// ---------------------------------------------------------------------------------------------
// Authentication and who may see or change what.

class HttpError extends Error {
  constructor(status, body, headers = {}) {
    super(typeof body.message === "string" ? body.message : JSON.stringify(body));
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}
const notFound = (what) => new HttpError(404, { message: `404 ${what} Not Found` });
const forbidden = () => new HttpError(403, { message: "403 Forbidden" });

/** The credentials a request carries, before checking them: `{ kind, token }`. */
function credentials(req) {
  const privateToken = req.headers["private-token"];
  if (privateToken !== undefined) return { kind: "private-token", token: privateToken };
  const h = req.headers.authorization;
  if (h === undefined) return { kind: "none" };
  const m = /^(\S+)\s+(\S+)$/.exec(h.trim());
  if (m && m[1].toLowerCase() === "bearer") return { kind: "bearer", token: m[2] };
  if (m && m[1].toLowerCase() === "basic") return { kind: "basic" };
  return { kind: "invalid" };
}

/** The token a request authenticates with (null: anonymous), checked as GitLab does. */
function authenticate(cred) {
  if (cred.kind === "invalid") throw new HttpError(401, { message: "401 Unauthorized" });
  // GitLab's API does not take basic auth: such a request is anonymous.
  if (cred.kind === "none" || cred.kind === "basic") return null;
  const t = scenario.tokens.find((t) => t.token === cred.token);
  if (!t || t.revoked || (t.expires_at && Date.parse(t.expires_at) <= Date.now())) {
    throw new HttpError(401, { message: "401 Unauthorized" });
  }
  return t;
}

/** A write needs the `api` scope: GitLab refuses others with an OAuth-style body. */
function requireApiScope(auth) {
  if (!auth) throw new HttpError(401, { message: "401 Unauthorized" });
  if (!auth.scopes.includes("api")) {
    throw new HttpError(
      403,
      { error: "insufficient_scope", error_description: "The request requires higher privileges than provided by the access token.", scope: "api" },
      { "www-authenticate": 'Bearer realm="Protected by OAuth 2.0", error="insufficient_scope", error_description="The request requires higher privileges than provided by the access token.", scope="api"' },
    );
  }
}

/** Whether the token's user is a member of `fullPath` (a group, directly or through an ancestor). */
function memberOf(auth, fullPath) {
  if (!auth || auth.kind !== "personal") return false;
  if (fullPath === auth.user) return true;
  return (scenario.members[auth.user] ?? []).some((g) => within(fullPath, g));
}

/** Whether the token may act in namespace `fullPath` (create projects, change them). */
function canWriteIn(auth, fullPath) {
  if (!auth) return false;
  if (auth.kind === "personal") return memberOf(auth, fullPath);
  if (auth.kind === "group") return within(fullPath, auth.group);
  return false;
}

function canSeeProject(auth, p) {
  if (p.visibility === "public") return true;
  if (!auth) return false;
  if (auth.kind === "project") return fullPathOf(p) === auth.project;
  if (auth.kind === "personal" && p.visibility === "internal") return true;
  const places = [p.namespace, ...p.shared_into];
  if (auth.kind === "group") return places.some((ns) => within(ns, auth.group));
  return places.some((ns) => memberOf(auth, ns));
}

function canWriteProject(auth, p) {
  if (auth?.kind === "project") return fullPathOf(p) === auth.project;
  return canWriteIn(auth, p.namespace);
}

function canSeeGroup(auth, g) {
  if (g.visibility === "public") return true;
  if (!auth) return false;
  if (g.visibility === "internal" && auth.kind === "personal") return true;
  // Members of a group see it; members of a subgroup see its ancestors.
  if (auth.kind === "personal") {
    return memberOf(auth, g.full_path) || (scenario.members[auth.user] ?? []).some((m) => within(m, g.full_path));
  }
  if (auth.kind === "group") return within(g.full_path, auth.group) || within(auth.group, g.full_path);
  return within(auth.project, g.full_path);
}

/** GitLab's namespace lookup goes by membership (read_namespace_via_membership). */
function canSeeNamespace(auth, fullPath) {
  if (!auth) return false;
  if (auth.kind === "personal") return memberOf(auth, fullPath);
  if (auth.kind === "group") return within(fullPath, auth.group);
  return false;
}

// ---------------------------------------------------------------------------------------------
// The bare repositories (with `git_root`): `<git_root>/<namespace>/<path>.git`.

function gitDir(p) {
  return scenario.git_root ? path.join(scenario.git_root, ...p.namespace.split("/"), `${p.path}.git`) : null;
}

function git(gitArgs, options = {}) {
  return execFileSync("git", gitArgs, { encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], ...options });
}

/**
 * The project's repository as it is: with a bare repository in git_root, `empty_repo` and
 * `default_branch` come from it (GitLab sets the default branch on the first push), else from
 * the scenario.
 */
function repoState(p) {
  const dir = gitDir(p);
  if (!dir || !existsSync(dir)) return { empty_repo: p.empty_repo, default_branch: p.default_branch };
  const branches = git(["--git-dir", dir, "for-each-ref", "--format=%(refname:short)", "refs/heads/"]).split("\n").filter(Boolean);
  if (!branches.length) return { empty_repo: true, default_branch: null };
  let head = null;
  try {
    head = git(["--git-dir", dir, "symbolic-ref", "--short", "HEAD"]).trim();
  } catch {
    head = null;
  }
  const branch = [p.default_branch, head].find((b) => b && branches.includes(b)) ?? branches[0];
  if (branch !== head) git(["--git-dir", dir, "symbolic-ref", "HEAD", `refs/heads/${branch}`]);
  p.default_branch = branch;
  return { empty_repo: false, default_branch: branch };
}

// ---------------------------------------------------------------------------------------------
// Answers.

function namespaceObject(fullPath, base) {
  const g = scenario.groups.find((g) => g.full_path === fullPath);
  if (g) {
    const parent = g.parent ? scenario.groups.find((p) => p.full_path === g.parent) : null;
    return { id: g.id, name: g.name, path: g.path, kind: "group", full_path: g.full_path, parent_id: parent?.id ?? null, web_url: `${base.web}/groups/${g.full_path}` };
  }
  const u = scenario.users.find((u) => u.username === fullPath);
  return { id: u.id, name: u.username, path: u.username, kind: "user", full_path: u.username, parent_id: null, web_url: `${base.web}/${u.username}` };
}

function projectObject(p, base, { simple = false } = {}) {
  const full = fullPathOf(p);
  const ns = namespaceObject(p.namespace, base);
  const repo = repoState(p);
  const out = {
    id: p.id,
    name: p.name,
    name_with_namespace: `${ns.name} / ${p.name}`,
    path: p.path,
    path_with_namespace: full,
    description: p.description,
    default_branch: repo.default_branch,
    http_url_to_repo: `${scenario.clone_url_base ?? base.web}/${full}.git`,
    ssh_url_to_repo: `git@${base.host}:${full}.git`,
    web_url: `${base.web}/${full}`,
    namespace: { id: ns.id, name: ns.name, path: ns.path, kind: ns.kind, full_path: ns.full_path, parent_id: ns.parent_id, web_url: ns.web_url },
  };
  if (simple) return out;
  Object.assign(out, { visibility: p.visibility, archived: p.archived, empty_repo: repo.empty_repo });
  if (p.fork_of) {
    const parent = findProject(p.fork_of);
    out.forked_from_project = parent
      ? { id: parent.id, name: parent.name, path: parent.path, path_with_namespace: fullPathOf(parent), http_url_to_repo: `${scenario.clone_url_base ?? base.web}/${fullPathOf(parent)}.git`, web_url: `${base.web}/${fullPathOf(parent)}` }
      : { id: 1_000_000 + p.id, name: lastSegment(p.fork_of), path: lastSegment(p.fork_of), path_with_namespace: p.fork_of, web_url: `${base.web}/${p.fork_of}` };
  }
  return out;
}

/** One page of `items`, with GitLab's offset pagination headers. */
function paginate(items, query, url, render) {
  const perPage = query.per_page ?? 20;
  const page = query.page ?? 1;
  const totalPages = Math.max(Math.ceil(items.length / perPage), 1);
  // GitLab merges page and per_page into the request's parameters and writes them with
  // Rails' to_query: sorted by name.
  const at = (n) => {
    const u = new URL(url);
    u.searchParams.set("page", String(n));
    u.searchParams.set("per_page", String(perPage));
    u.searchParams.sort();
    return `<${u}>`;
  };
  const links = [];
  if (page > 1) links.push(`${at(page - 1)}; rel="prev"`);
  if (page < totalPages) links.push(`${at(page + 1)}; rel="next"`);
  links.push(`${at(1)}; rel="first"`, `${at(totalPages)}; rel="last"`);
  return {
    status: 200,
    body: items.slice((page - 1) * perPage, page * perPage).map(render),
    headers: {
      "x-page": String(page),
      "x-per-page": String(perPage),
      "x-next-page": page < totalPages ? String(page + 1) : "",
      "x-prev-page": page > 1 ? String(page - 1) : "",
      "x-total": String(items.length),
      "x-total-pages": String(totalPages),
      link: links.join(", "),
    },
  };
}

function sortProjects(projects, orderBy, sort) {
  const key = {
    id: (p) => p.id,
    name: (p) => p.name.toLowerCase(),
    path: (p) => p.path.toLowerCase(),
  }[orderBy] ?? ((p) => p.created); // created_at and the rest: scenario order
  const out = [...projects].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    return x < y ? -1 : x > y ? 1 : a.id - b.id;
  });
  return sort === "asc" ? out : out.reverse();
}

const PATH_RULE = "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'";
const VISIBILITY_RANK = { private: 0, internal: 1, public: 2 };

const handlers = {
  "GET /api/v4/groups/{id}/projects": ({ params, auth, base, url }) => {
    const q = params.query;
    const g = findGroup(params.path.id);
    if (!g || !canSeeGroup(auth, g)) throw notFound("Group");
    const inGroup = (ns) => (q.include_subgroups ? within(ns, g.full_path) : ns === g.full_path);
    let projects = scenario.projects.filter(
      (p) => (inGroup(p.namespace) || (q.with_shared !== false && p.shared_into.some(inGroup))) && canSeeProject(auth, p),
    );
    if (q.archived !== undefined) projects = projects.filter((p) => p.archived === q.archived);
    if (q.visibility) projects = projects.filter((p) => p.visibility === q.visibility);
    projects = sortProjects(projects, q.order_by ?? "created_at", q.sort ?? "desc");
    // Anonymous callers get the limited fields, as with simple=true.
    return paginate(projects, q, url, (p) => projectObject(p, base, { simple: q.simple === true || !auth }));
  },
  "GET /api/v4/projects/{id}": ({ params, auth, base }) => {
    const p = findProject(params.path.id);
    if (!p || !canSeeProject(auth, p)) throw notFound("Project");
    return { status: 200, body: projectObject(p, base) };
  },
  "GET /api/v4/namespaces/{id}": ({ params, auth, base }) => {
    if (!auth) throw new HttpError(401, { message: "401 Unauthorized" });
    const id = params.path.id;
    const g = findGroup(id);
    const u = g ? null : findUser(id);
    const fullPath = g?.full_path ?? u?.username;
    if (!fullPath || !canSeeNamespace(auth, fullPath)) throw notFound("Namespace");
    return { status: 200, body: namespaceObject(fullPath, base) };
  },
  "POST /api/v4/projects": ({ auth, body, base }) => {
    requireApiScope(auth);
    let namespace;
    if (body.namespace_id === undefined) {
      // The caller's own namespace: only a user has one.
      if (auth.kind !== "personal") throw forbidden();
      namespace = auth.user;
    } else {
      const id = String(body.namespace_id);
      namespace = findGroup(id)?.full_path ?? findUser(id)?.username;
      if (!namespace || !canSeeNamespace(auth, namespace)) throw notFound("Namespace");
    }
    if (!canWriteIn(auth, namespace)) throw forbidden();
    const name = body.name ?? body.path;
    const projectPath =
      body.path ??
      name
        .trim()
        .toLowerCase()
        .replace(/[^a-z0-9_.-]+/g, "-")
        .replace(/^-+|-+$/g, "");
    if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/.test(projectPath) || /\.(git|atom)$/.test(projectPath) || projectPath.includes("..")) {
      throw new HttpError(400, { message: { path: [PATH_RULE] } });
    }
    const clash = {};
    const siblings = scenario.projects.filter((p) => p.namespace === namespace);
    if (siblings.some((p) => p.path.toLowerCase() === projectPath.toLowerCase())) clash.path = ["has already been taken"];
    if (siblings.some((p) => p.name.toLowerCase() === name.toLowerCase())) clash.name = ["has already been taken"];
    if (clash.path || clash.name) {
      // GitLab names both when the path is taken (the name follows it).
      if (clash.path) clash.name = ["has already been taken"];
      throw new HttpError(400, { message: clash });
    }
    const visibility = body.visibility ?? "private";
    const group = scenario.groups.find((g) => g.full_path === namespace);
    if (group && VISIBILITY_RANK[visibility] > VISIBILITY_RANK[group.visibility]) {
      throw new HttpError(400, { message: { visibility_level: [`${visibility} is not allowed in a ${group.visibility} group.`] } });
    }
    const readme = body.initialize_with_readme === true;
    const p = {
      id: Math.max(100, ...scenario.projects.map((p) => p.id)) + 1,
      namespace,
      path: projectPath,
      name,
      description: body.description ?? null,
      visibility,
      archived: false,
      fork_of: null,
      default_branch: readme ? "main" : null,
      empty_repo: !readme,
      shared_into: [],
      created: scenario.projects.length,
      created_by_api: true,
    };
    const dir = gitDir(p);
    if (dir) {
      git(["init", "--bare", "-q", "--initial-branch=main", dir]);
      if (readme) {
        const env = { ...process.env, GIT_DIR: dir, GIT_AUTHOR_NAME: auth.user, GIT_AUTHOR_EMAIL: `${auth.user}@gitlab.example`, GIT_COMMITTER_NAME: "GitLab", GIT_COMMITTER_EMAIL: "gitlab@gitlab.example" };
        const blob = git(["hash-object", "-w", "--stdin"], { env, input: `# ${name}\n` }).trim();
        const tree = git(["mktree"], { env, input: `100644 blob ${blob}\tREADME.md\n` }).trim();
        const commit = git(["commit-tree", tree, "-m", "Initial commit"], { env }).trim();
        git(["update-ref", "refs/heads/main", commit], { env });
      }
    }
    scenario.projects.push(p);
    return { status: 201, body: projectObject(p, base) };
  },
  "PUT /api/v4/projects/{id}": ({ params, auth, body, base }) => {
    requireApiScope(auth);
    const p = findProject(params.path.id);
    if (!p || !canSeeProject(auth, p)) throw notFound("Project");
    if (!canWriteProject(auth, p)) throw forbidden();
    if (body.default_branch !== undefined) {
      const dir = gitDir(p);
      if (dir && existsSync(dir)) {
        try {
          git(["--git-dir", dir, "rev-parse", "-q", "--verify", `refs/heads/${body.default_branch}^{commit}`]);
        } catch {
          throw new HttpError(400, { message: "Could not set the default branch" });
        }
        git(["--git-dir", dir, "symbolic-ref", "HEAD", `refs/heads/${body.default_branch}`]);
      }
      p.default_branch = body.default_branch;
    }
    for (const k of ["description", "visibility", "archived"]) if (body[k] !== undefined) p[k] = body[k];
    return { status: 200, body: projectObject(p, base) };
  },
};

// ---------------------------------------------------------------------------------------------
// Faults the scenario switches on. A route is a path template, with or without `/api/v4`,
// optionally with the method first (`GET /groups/{id}/projects`).

function routeMatches(routesGiven, route, method) {
  const short = route.replace(/^\/api\/v4/, "");
  return routesGiven.some((r) => [route, short, `${method} ${route}`, `${method} ${short}`].includes(r));
}

function rateLimitFault(route, method) {
  const f = scenario.faults.rate_limit;
  if (!f) return null;
  if (f.routes && !routeMatches(f.routes, route, method)) return null;
  state.rateLimitMatched++;
  if (state.rateLimitMatched <= (f.after ?? 0)) return null;
  if (f.times !== undefined && state.rateLimited >= f.times) return null;
  if (f.times === undefined && state.rateLimitReset !== null && now() >= state.rateLimitReset) return null;
  state.rateLimited++;
  state.rateLimitReset ??= now() + (f.reset_in ?? 60);
  const limit = f.limit ?? 2000;
  const err = new HttpError(429, "Retry later\n", {
    "retry-after": String(Math.max(state.rateLimitReset - now(), 0)),
    "ratelimit-name": "throttle_authenticated_api",
    "ratelimit-limit": String(limit),
    "ratelimit-observed": String(limit),
    "ratelimit-remaining": "0",
    "ratelimit-reset": String(state.rateLimitReset),
    "ratelimit-resettime": new Date(state.rateLimitReset * 1000).toUTCString(),
  });
  err.text = true;
  return err;
}

function injectedError(route, method) {
  for (const [i, f] of (scenario.faults.errors ?? []).entries()) {
    if (!routeMatches([f.route], route, method)) continue;
    const count = state.errorCounts.get(i) ?? 0;
    if (f.times !== undefined && count >= f.times) continue;
    state.errorCounts.set(i, count + 1);
    const status = f.status ?? 500;
    return new HttpError(status, { message: f.message ?? `${status} ${status === 500 ? "Internal Server Error" : "Error"}` }, f.headers ?? {});
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The server.

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function queryObject(searchParams) {
  const q = {};
  for (const [k, v] of searchParams) q[k] = k in q ? [].concat(q[k], v) : v;
  return q;
}

function record(entry) {
  appendFileSync(args.log, `${JSON.stringify(entry)}\n`);
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, {
    "content-type": typeof body === "string" ? "text/plain; charset=utf-8" : "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function handle(req, res) {
  const rawBody = await readBody(req);
  // Behind nginx (GitlabApi::behind_nginx): the client's scheme and host, for URLs and Link.
  const scheme = req.headers["x-forwarded-proto"] === "https" ? "https" : "http";
  const host = req.headers.host ?? "127.0.0.1";
  const url = new URL(req.url, `${scheme}://${host}`);
  const base = { web: `${scheme}://${host}`, host: host.replace(/:\d+$/, "") };

  // The harness's own door: replace the scenario while running (not part of GitLab's API).
  if (url.pathname === "/_kalandra/scenario" && req.method === "PUT") {
    try {
      loadScenario(JSON.parse(rawBody.toString("utf8")));
      return send(res, 204);
    } catch (e) {
      return send(res, 400, { message: String(e.message) });
    }
  }

  const query = queryObject(url.searchParams);
  const cred = credentials(req);
  const entry = {
    time: new Date().toISOString(),
    method: req.method,
    path: url.pathname,
    route: null,
    query,
    body: null,
    auth: { kind: cred.kind, token_kind: null, user: null },
    headers: {
      user_agent: req.headers["user-agent"] ?? null,
      accept: req.headers.accept ?? null,
      content_type: req.headers["content-type"] ?? null,
    },
    status: 0,
    violations: [],
  };
  let status, body, headers;
  let checked = null;
  try {
    checked = checkRequest({ method: req.method, pathname: url.pathname, query, headers: req.headers, rawBody });
    if (!checked || !checked.operation) {
      // GitLab has many more operations than the description: not a violation, but not served.
      entry.route = checked?.route ?? null;
      entry.unimplemented = true;
      throw new HttpError(404, { error: "404 Not Found" });
    }
    entry.route = checked.route;
    entry.body = checked.body ?? (rawBody.length ? rawBody.toString("utf8") : null);
    if (checked.violations.length) {
      entry.violations = checked.violations;
      throw new HttpError(400, { error: `contract violation: ${checked.violations.join("; ")}` });
    }
    const auth = authenticate(cred);
    if (auth) entry.auth = { kind: cred.kind, token_kind: auth.kind, user: auth.user, scopes: auth.scopes };
    const fault = rateLimitFault(checked.route, req.method) ?? injectedError(checked.route, req.method);
    if (fault) {
      fault.injected = true;
      throw fault;
    }
    ({ status, body, headers } = handlers[`${req.method} ${checked.route}`]({
      params: checked.params,
      auth,
      body: checked.body ?? {},
      base,
      url: url.href,
    }));
    headers ??= {};
  } catch (e) {
    if (!(e instanceof HttpError)) {
      entry.violations.push(`the contract server failed: ${e.stack ?? e}`);
      status = 500;
      body = { message: `contract server error: ${e.message}` };
      headers = {};
    } else {
      status = e.status;
      body = e.body;
      headers = e.headers;
      if (!checked?.operation || entry.violations.length || e.injected) checked = null;
    }
  }
  // Answers the description declares are checked against it (not the violations' 400s, the
  // unimplemented 404s or the faults the scenario injects).
  if (checked?.operation && !entry.violations.length) {
    const wrong = checkResponse(checked.operation, status, body, headers);
    entry.violations = wrong.map((w) => `the contract server's own answer: ${w}`);
  }
  entry.status = status;
  record(entry);
  send(res, status, body, headers);
}

const server = createServer((req, res) => {
  handle(req, res).catch((e) => {
    try {
      record({ time: new Date().toISOString(), method: req.method, path: req.url, violations: [`the contract server failed: ${e.stack ?? e}`], status: 500 });
      send(res, 500, { message: "contract server error" });
    } catch {
      res.destroy();
    }
  });
});

server.listen(args.port, "127.0.0.1", () => {
  process.stdout.write(
    `listening http://127.0.0.1:${server.address().port} (GitLab REST v4, gitlab-api.json ${spec.info.version}, ${Object.keys(spec.paths).length} paths)\n`,
  );
});

// Never outlive the test: the harness holds our stdin open and it closes when the test ends.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
process.on("SIGTERM", () => process.exit(0));
