#!/usr/bin/env node
// A local GitHub REST API for Kalandra's contract tests (see README.md beside this file).
//
//   node server.js --scenario FILE --log FILE [--port N]
//
// Listens on 127.0.0.1:N (0: any free port) and prints `listening http://127.0.0.1:PORT` on
// stdout once it accepts connections. Every request is checked against GitHub's OpenAPI
// description (spec.js); one that does not match is answered 400 and recorded as a contract
// violation. Every request is appended to the log (JSON lines) before its answer is sent, so
// that a client that has its answer finds the request in the log. The server exits when its
// standard input closes, so that it never outlives the test process that started it.

import { createServer } from "node:http";
import { appendFileSync, readFileSync } from "node:fs";
import crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { checkRequest, checkResponse, example, spec, specVersion } from "./spec.js";

const DOCS = "https://docs.github.com/rest";

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
  if (!args.scenario || !args.log) throw new Error("usage: server.js --scenario FILE --log FILE [--port N]");
  return args;
}

const args = parseArgs(process.argv.slice(2));
const now = () => Math.floor(Date.now() / 1000);
const iso = (secs) => new Date(secs * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");

// ---------------------------------------------------------------------------------------------
// The scenario: who exists, what is installed where, which tokens are issued, what goes wrong.

let scenario;
let state;

function loadScenario(s) {
  const apps = (s.apps ?? []).map((a) => {
    if (a.id === undefined || !a.public_key_pem) throw new Error("every app needs an id and a public_key_pem");
    return {
      ...a,
      key: crypto.createPublicKey(a.public_key_pem),
      slug: a.slug ?? `app-${a.id}`,
      client_id: a.client_id ?? `Iv1.${String(a.id).padStart(16, "0")}`,
      installations: (a.installations ?? []).map((i) => {
        if (i.id === undefined || !i.account) throw new Error("every installation needs an id and an account");
        const tokens = i.tokens ?? (i.token ? [i.token] : [`ghs_test${i.id}${"x".repeat(28)}`.slice(0, 40)]);
        return {
          account_type: "Organization",
          repositories: "all",
          permissions: { metadata: "read", contents: "write" },
          ...i,
          tokens,
        };
      }),
    };
  });
  const repos = (s.repositories ?? []).map((r, index) => {
    const [owner, name] = r.full_name ? r.full_name.split("/") : [r.owner, r.name];
    if (!owner || !name) throw new Error("every repository needs owner and name (or full_name)");
    const priv = r.private ?? (r.visibility ? r.visibility !== "public" : true);
    return {
      id: r.id ?? 1000 + index,
      owner,
      name,
      private: priv,
      visibility: r.visibility ?? (priv ? "private" : "public"),
      archived: r.archived ?? false,
      fork: r.fork ?? false,
      default_branch: r.default_branch ?? "main",
      description: r.description ?? null,
      clone_url: r.clone_url ?? null,
      properties: r.properties ?? {},
      created: index,
    };
  });
  scenario = { ...s, apps, repositories: repos, faults: s.faults ?? {} };
  state = {
    tokensIssued: new Map(state?.tokensIssued ?? []),
    // Which of each installation's `tokens` comes next: kept across scenario changes.
    tokenCursor: new Map(state?.tokenCursor ?? []),
    rateLimited: 0,
    rateLimitMatched: 0,
    rateLimitReset: null,
    errorCounts: new Map(),
  };
}

state = undefined;
loadScenario(JSON.parse(readFileSync(args.scenario, "utf8")));

const same = (a, b) => String(a).toLowerCase() === String(b).toLowerCase();
const findRepo = (owner, name) => scenario.repositories.find((r) => same(r.owner, owner) && same(r.name, name));
const accountId = (login) => {
  const org = (scenario.orgs ?? []).find((o) => same(o.login, login));
  if (org?.id) return org.id;
  let h = 0;
  for (const c of login.toLowerCase()) h = (h * 31 + c.charCodeAt(0)) % 1_000_000;
  return 100_000 + h;
};
const knownOwner = (login) =>
  (scenario.orgs ?? []).some((o) => same(o.login, login)) ||
  scenario.repositories.some((r) => same(r.owner, login)) ||
  scenario.apps.some((a) => a.installations.some((i) => same(i.account, login)));

function installationCovers(inst, owner, name) {
  if (!same(inst.account, owner)) return false;
  return inst.repositories === "all" || inst.repositories.some((r) => same(r, name));
}

// ---------------------------------------------------------------------------------------------
// Authentication.

class HttpError extends Error {
  constructor(status, message, extra = {}) {
    super(message);
    this.status = status;
    this.extra = extra;
  }
}

const b64url = (s) => Buffer.from(s, "base64url");

/** The app a JWT authenticates, checked as GitHub documents it. */
function verifyJwt(jwt) {
  const undecodable = () => new HttpError(401, "A JSON web token could not be decoded");
  const parts = jwt.split(".");
  if (parts.length !== 3) throw undecodable();
  let header, claims;
  try {
    header = JSON.parse(b64url(parts[0]).toString("utf8"));
    claims = JSON.parse(b64url(parts[1]).toString("utf8"));
  } catch {
    throw undecodable();
  }
  if (header.alg !== "RS256") throw undecodable();
  const app = scenario.apps.find((a) => String(a.id) === String(claims.iss) || a.client_id === claims.iss);
  if (!app) throw new HttpError(401, "Integration not found");
  const signed = crypto.verify("sha256", Buffer.from(`${parts[0]}.${parts[1]}`), app.key, b64url(parts[2]));
  // A revoked key is one GitHub no longer has: its signatures verify against nothing.
  if (!signed || app.revoked) throw undecodable();
  const t = now();
  if (!Number.isInteger(claims.iat)) {
    throw new HttpError(401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued");
  }
  if (claims.iat > t + 1) {
    throw new HttpError(401, "'Issued at' claim ('iat') must be an Integer representing a time in the past");
  }
  if (!Number.isInteger(claims.exp) || claims.exp <= t || claims.exp <= claims.iat) {
    throw new HttpError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires");
  }
  // GitHub: "no more than 10 minutes into the future". Its own example signs iat = now - 60
  // and exp = now + 600, so the limit is against the clock, not against iat.
  if (claims.exp > t + 600 + 1) throw new HttpError(401, "'Expiration time' claim ('exp') is too far in the future");
  return app;
}

/** The kind of credentials an Authorization header carries, before checking them. */
function authKind(header) {
  const m = /^(\S+)\s+(.+)$/.exec((header ?? "").trim());
  if (!header) return "none";
  if (!m) return "invalid";
  const scheme = m[1].toLowerCase();
  if (scheme === "bearer" && m[2].split(".").length === 3) return "jwt";
  if (scheme === "bearer" || scheme === "token") return "token";
  return scheme === "basic" ? "basic" : "invalid";
}

/** What the Authorization header says, verified. */
function authenticate(req) {
  const h = req.headers.authorization;
  if (!h) return { kind: "none" };
  const m = /^(\S+)\s+(.+)$/.exec(h.trim());
  if (!m) throw new HttpError(401, "Bad credentials");
  const [scheme, value] = [m[1].toLowerCase(), m[2]];
  if (scheme === "bearer" && value.split(".").length === 3) {
    const app = verifyJwt(value);
    return { kind: "jwt", app };
  }
  if (scheme === "bearer" || scheme === "token") {
    const issued = state.tokensIssued.get(value);
    if (!issued || issued.expires <= now()) throw new HttpError(401, "Bad credentials");
    return { kind: "token", token: value, ...issued };
  }
  if (scheme === "basic") return { kind: "basic" };
  throw new HttpError(401, "Bad credentials");
}

const requireJwt = (auth) => {
  if (auth.kind !== "jwt") {
    throw new HttpError(401, "A JSON web token could not be decoded", { note: "this endpoint needs an app JWT" });
  }
  return auth.app;
};

/** Whether the request's identity may see a repository (GitHub answers 404 when not). */
function canSee(auth, repo) {
  if (!repo.private) return true;
  if (auth.kind !== "token") return false;
  if (!installationCovers(auth.installation, repo.owner, repo.name)) return false;
  return !auth.repositories || auth.repositories.some((r) => same(r, repo.name));
}

// ---------------------------------------------------------------------------------------------
// Answers, made from the spec's examples.

/** Replaces the example's owner/repository names and URLs with ours. */
function retarget(value, { base, owner, name, exampleOwner = "octocat", exampleName = "Hello-World" }) {
  let text = JSON.stringify(value).replaceAll("https://api.github.com", base);
  if (name) text = text.replaceAll(`${exampleOwner}/${exampleName}`, `${owner}/${name}`);
  if (owner) {
    const escaped = exampleOwner.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    text = text
      .replace(new RegExp(`(?<=[^/])/${escaped}(?=[/"{?])`, "g"), `/${owner}`)
      .replaceAll(`"${exampleOwner}"`, JSON.stringify(owner));
  }
  return JSON.parse(text);
}

function ownerObject(template, login, base) {
  const type = (scenario.orgs ?? []).find((o) => same(o.login, login))?.type ?? "Organization";
  const o = retarget(template, { base, owner: login, exampleOwner: template.login });
  return { ...o, login, id: accountId(login), type };
}

function repoObject(template, repo, base) {
  const r = retarget(template, { base, owner: repo.owner, name: repo.name });
  Object.assign(r, {
    id: repo.id,
    node_id: Buffer.from(`010:Repository${repo.id}`).toString("base64"),
    name: repo.name,
    full_name: `${repo.owner}/${repo.name}`,
    owner: ownerObject(template.owner, repo.owner, base),
    private: repo.private,
    visibility: repo.visibility,
    archived: repo.archived,
    disabled: false,
    fork: repo.fork,
    default_branch: repo.default_branch,
    description: repo.description,
    html_url: `https://github.com/${repo.owner}/${repo.name}`,
    clone_url: repo.clone_url ?? `https://github.com/${repo.owner}/${repo.name}.git`,
  });
  // Some of the description's own full-repository examples lack required properties.
  if (!("language" in r)) r.language = null;
  if (!("has_discussions" in r) && "has_issues" in r) r.has_discussions = false;
  if ("custom_properties" in r || Object.keys(repo.properties).length) r.custom_properties = { ...repo.properties };
  if (r.organization) r.organization = ownerObject(r.organization, repo.owner, base);
  for (const k of ["parent", "source", "template_repository"]) delete r[k];
  return r;
}

function installationObject(app, inst, base) {
  const ex = example("/repos/{owner}/{repo}/installation", "get", 200);
  const r = retarget(ex, { base, owner: inst.account, exampleOwner: ex.account.login });
  return {
    ...r,
    id: inst.id,
    account: {
      ...ownerObject(ex.account, inst.account, base),
      type: inst.account_type,
      // `GET /app/installations` declares the account as allOf [simple-user, enterprise]
      // (elsewhere anyOf): these four make it both.
      name: inst.account,
      slug: inst.account.toLowerCase(),
      created_at: ex.created_at,
      updated_at: ex.updated_at,
    },
    repository_selection: inst.repositories === "all" ? "all" : "selected",
    access_tokens_url: `${base}/app/installations/${inst.id}/access_tokens`,
    app_id: app.id,
    app_slug: app.slug,
    client_id: app.client_id,
    target_id: accountId(inst.account),
    target_type: inst.account_type,
    permissions: inst.permissions,
  };
}

function linkHeader(url, page, last) {
  const at = (p) => {
    const u = new URL(url);
    u.searchParams.set("page", String(p));
    return `<${u}>`;
  };
  const links = [];
  if (page > 1) links.push(`${at(page - 1)}; rel="prev"`);
  if (page < last) links.push(`${at(page + 1)}; rel="next"`, `${at(last)}; rel="last"`);
  if (page > 1) links.push(`${at(1)}; rel="first"`);
  return links.join(", ");
}

/** One page of `items` (`per_page` default 30, at most 100), with GitHub's `Link` header. */
function paginate(items, query, url, render) {
  const perPage = Math.min(Math.max(query.per_page ?? 30, 1), 100);
  const page = Math.max(query.page ?? 1, 1);
  const last = Math.max(Math.ceil(items.length / perPage), 1);
  const headers = {};
  const link = items.length ? linkHeader(url, page, last) : "";
  if (link) headers.link = link;
  return { status: 200, body: items.slice((page - 1) * perPage, page * perPage).map(render), headers };
}

// ---------------------------------------------------------------------------------------------
// The endpoints.

const handlers = {
  "GET /repos/{owner}/{repo}/installation": ({ params, auth, base }) => {
    const app = requireJwt(auth);
    const { owner, repo } = params.path;
    const inst = app.uninstalled ? null : app.installations.find((i) => installationCovers(i, owner, repo));
    if (!inst) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app" });
    return { status: 200, body: installationObject(app, inst, base) };
  },
  "GET /app": ({ auth, base }) => {
    const app = requireJwt(auth);
    const ex = example("/app", "get", 200);
    return {
      status: 200,
      body: { ...retarget(ex, { base }), id: app.id, slug: app.slug, client_id: app.client_id, name: app.name ?? app.slug },
    };
  },
  "GET /app/installations": ({ params, auth, base, url }) => {
    const app = requireJwt(auth);
    return paginate(app.uninstalled ? [] : app.installations, params.query, url, (inst) => installationObject(app, inst, base));
  },
  "GET /app/installations/{installation_id}": ({ params, auth, base }) => {
    const app = requireJwt(auth);
    const inst = app.uninstalled ? null : app.installations.find((i) => String(i.id) === String(params.path.installation_id));
    if (!inst) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app" });
    return { status: 200, body: installationObject(app, inst, base) };
  },
  "GET /users/{username}/installation": ({ params, auth, base }) => {
    const app = requireJwt(auth);
    const { username } = params.path;
    const inst = app.uninstalled ? null : app.installations.find((i) => same(i.account, username));
    if (!inst) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/apps/apps#get-a-user-installation-for-the-authenticated-app" });
    return { status: 200, body: installationObject(app, inst, base) };
  },
  "GET /orgs/{org}/installation": ({ params, auth, base }) => {
    const app = requireJwt(auth);
    const { org } = params.path;
    const inst = app.uninstalled ? null : app.installations.find((i) => same(i.account, org));
    if (!inst) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/apps/apps#get-an-organization-installation-for-the-authenticated-app" });
    return { status: 200, body: installationObject(app, inst, base) };
  },
  "POST /app/installations/{installation_id}/access_tokens": ({ params, auth, body, base }) => {
    const app = requireJwt(auth);
    const id = params.path.installation_id;
    const inst = app.uninstalled ? null : app.installations.find((i) => String(i.id) === String(id));
    if (!inst) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app" });
    const wanted = body?.repositories ?? null;
    if (wanted && wanted.some((name) => !installationCovers(inst, inst.account, name) || !findRepo(inst.account, name))) {
      throw new HttpError(422, "There is at least one repository that does not exist or is not accessible to the parent installation.");
    }
    if (body?.repository_ids) {
      throw new HttpError(422, "repository_ids is not supported by the contract server; name the repositories");
    }
    let permissions = inst.permissions;
    if (body?.permissions) {
      const rank = { read: 1, write: 2, admin: 3 };
      for (const [k, v] of Object.entries(body.permissions)) {
        if (!inst.permissions[k] || rank[inst.permissions[k]] < rank[v]) {
          throw new HttpError(422, "The permissions requested are not granted to this installation.");
        }
      }
      permissions = body.permissions;
    }
    const cursor = state.tokenCursor.get(inst.id) ?? 0;
    state.tokenCursor.set(inst.id, cursor + 1);
    const token = inst.tokens[Math.min(cursor, inst.tokens.length - 1)];
    const expires = inst.expires_at ? Math.floor(Date.parse(inst.expires_at) / 1000) : now() + (inst.expires_in ?? 3600);
    state.tokensIssued.set(token, { app, installation: inst, repositories: wanted, permissions, expires });
    const ex = example("/app/installations/{installation_id}/access_tokens", "post", 201);
    const out = {
      token,
      expires_at: iso(expires),
      permissions,
      repository_selection: wanted || inst.repositories !== "all" ? "selected" : "all",
    };
    if (wanted) {
      out.repositories = wanted.map((name) => repoObject(ex.repositories[0], findRepo(inst.account, name), base));
    }
    return { status: 201, body: out };
  },
  // The token the request is made with is revoked: refused from now on, by the API and (once
  // the test moves nginx's token on) by git.
  "DELETE /installation/token": ({ auth }) => {
    if (auth.kind !== "token") throw new HttpError(401, "Requires authentication");
    state.tokensIssued.delete(auth.token);
    return { status: 204 };
  },
  "GET /repos/{owner}/{repo}": ({ params, auth, base }) => {
    const repo = findRepo(params.path.owner, params.path.repo);
    if (!repo || !canSee(auth, repo)) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/repos/repos#get-a-repository" });
    return { status: 200, body: repoObject(example("/repos/{owner}/{repo}", "get", 200), repo, base) };
  },
  "GET /repos/{owner}/{repo}/properties/values": ({ params, auth }) => {
    const repo = findRepo(params.path.owner, params.path.repo);
    if (!repo || !canSee(auth, repo)) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/repos/custom-properties#get-all-custom-property-values-for-a-repository" });
    return {
      status: 200,
      body: Object.entries(repo.properties).map(([property_name, value]) => ({ property_name, value })),
    };
  },
  "GET /orgs/{org}/repos": ({ params, auth, base, url }) => {
    const { org } = params.path;
    if (!knownOwner(org)) throw new HttpError(404, "Not Found", { docs: "https://docs.github.com/rest/repos/repos#list-organization-repositories" });
    const q = params.query;
    const type = q.type ?? "all";
    let repos = scenario.repositories.filter((r) => same(r.owner, org) && canSee(auth, r));
    repos = repos.filter((r) =>
      type === "public" ? !r.private : type === "private" ? r.private : type === "forks" ? r.fork : type === "sources" ? !r.fork : true,
    );
    if (q.sort === "full_name") {
      repos.sort((a, b) => a.name.localeCompare(b.name));
      if (q.direction === "desc") repos.reverse();
    } else if (q.direction === "asc") {
      repos.sort((a, b) => a.created - b.created);
    }
    const template = example("/orgs/{org}/repos", "get", 200)[0];
    return paginate(repos, q, url, (r) => repoObject(template, r, base));
  },
  "GET /orgs/{org}/properties/values": ({ params, auth, url }) => {
    const docs = "https://docs.github.com/rest/orgs/custom-properties#list-custom-property-values-for-organization-repositories";
    const { org } = params.path;
    if (!knownOwner(org)) throw new HttpError(404, "Not Found", { docs });
    // An app needs the organization permission "Custom properties: read" (or more).
    if (auth.kind !== "token" || !same(auth.installation.account, org) || !auth.permissions?.organization_custom_properties) {
      throw new HttpError(403, "Resource not accessible by integration", { docs });
    }
    let repos = scenario.repositories.filter((r) => same(r.owner, org) && canSee(auth, r));
    for (const term of (params.query.repository_query ?? "").split(/\s+/).filter(Boolean)) {
      const m = /^props\.([^:]+):(.+)$/.exec(term);
      if (!m) throw new HttpError(422, `the contract server understands only props.NAME:VALUE in repository_query, not ${term}`, { docs });
      repos = repos.filter((r) => r.properties[m[1]] === m[2]);
    }
    return paginate(repos, params.query, url, (r) => ({
      repository_id: r.id,
      repository_name: r.name,
      repository_full_name: `${r.owner}/${r.name}`,
      properties: Object.entries(r.properties).map(([property_name, value]) => ({ property_name, value })),
    }));
  },
};

// ---------------------------------------------------------------------------------------------
// Writes: creating a repository and changing its default branch. With `git_root` in the
// scenario they act on the real bare repositories nginx serves (`<git_root>/OWNER/NAME.git`).

function gitDir(repo) {
  return scenario.git_root ? path.join(scenario.git_root, repo.owner, `${repo.name}.git`) : null;
}

function git(args) {
  return execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** An installation token with `administration: write` on `owner`, as repository writes need. */
function requireAdmin(auth, owner, docs) {
  if (auth.kind === "none") throw new HttpError(401, "Requires authentication", { docs });
  if (auth.kind !== "token") throw new HttpError(403, "Resource not accessible by integration", { docs });
  if (!same(auth.installation.account, owner) || auth.permissions?.administration !== "write") {
    throw new HttpError(403, "Resource not accessible by integration", { docs });
  }
}

Object.assign(handlers, {
  "POST /orgs/{org}/repos": ({ params, auth, body, base }) => {
    const docs = "https://docs.github.com/rest/repos/repos#create-an-organization-repository";
    const { org } = params.path;
    requireAdmin(auth, org, docs);
    // GitHub keeps ASCII letters, digits, `.`, `-` and `_` (it rewrites the rest); the contract
    // server refuses others rather than guess, and so never leaves git_root.
    if (!/^[A-Za-z0-9._-]+$/.test(body.name) || body.name === "." || body.name === "..") {
      throw new HttpError(422, "Repository creation failed.", {
        docs,
        errors: [{ resource: "Repository", code: "custom", field: "name", message: "name is not one the contract server accepts" }],
      });
    }
    if (findRepo(org, body.name)) {
      throw new HttpError(422, "Repository creation failed.", {
        docs,
        errors: [{ resource: "Repository", code: "custom", field: "name", message: "name already exists on this account" }],
      });
    }
    // GitHub's default is public: a client that wants private must say so.
    const priv = body.visibility ? body.visibility !== "public" : (body.private ?? false);
    const repo = {
      id: 1000 + scenario.repositories.length,
      owner: org,
      name: body.name,
      private: priv,
      visibility: body.visibility ?? (priv ? "private" : "public"),
      archived: false,
      fork: false,
      default_branch: "main",
      description: body.description ?? null,
      clone_url: scenario.clone_url_base ? `${scenario.clone_url_base}/${org}/${body.name}.git` : null,
      properties: {},
      created: scenario.repositories.length,
      created_by_api: true,
    };
    scenario.repositories.push(repo);
    // Repositories an app creates join its installation.
    if (auth.installation.repositories !== "all") auth.installation.repositories.push(repo.name);
    const dir = gitDir(repo);
    if (dir) git(["init", "--bare", "-q", `--initial-branch=${repo.default_branch}`, dir]);
    return { status: 201, body: repoObject(example("/orgs/{org}/repos", "post", 201), repo, base) };
  },
  "PATCH /repos/{owner}/{repo}": ({ params, auth, body: given, base }) => {
    const body = given ?? {};
    const docs = "https://docs.github.com/rest/repos/repos#update-a-repository";
    const repo = findRepo(params.path.owner, params.path.repo);
    if (!repo || !canSee(auth, repo)) throw new HttpError(404, "Not Found", { docs });
    requireAdmin(auth, repo.owner, docs);
    const dir = gitDir(repo);
    if (body.default_branch !== undefined) {
      if (dir && existsSync(dir)) {
        try {
          git(["--git-dir", dir, "rev-parse", "-q", "--verify", `refs/heads/${body.default_branch}^{commit}`]);
        } catch {
          throw new HttpError(422, "Validation Failed", {
            docs,
            errors: [{ resource: "Repository", code: "invalid", field: "default_branch" }],
          });
        }
        git(["--git-dir", dir, "symbolic-ref", "HEAD", `refs/heads/${body.default_branch}`]);
      }
      repo.default_branch = body.default_branch;
    }
    for (const k of ["description", "archived"]) if (body[k] !== undefined) repo[k] = body[k];
    if (body.private !== undefined) {
      repo.private = body.private;
      repo.visibility = body.private ? "private" : "public";
    }
    if (body.visibility !== undefined) {
      repo.visibility = body.visibility;
      repo.private = body.visibility !== "public";
    }
    return { status: 200, body: repoObject(example("/repos/{owner}/{repo}", "get", 200), repo, base) };
  },
});

// ---------------------------------------------------------------------------------------------
// Faults the scenario switches on.

function rateLimitFault(route, method) {
  const f = scenario.faults.rate_limit;
  if (!f) return null;
  if (f.routes && !f.routes.includes(route) && !f.routes.includes(`${method} ${route}`)) return null;
  state.rateLimitMatched++;
  if (state.rateLimitMatched <= (f.after ?? 0)) return null;
  if (f.times !== undefined && state.rateLimited >= f.times) return null;
  // Without `times`, the limit lasts until its reset, as GitHub's does.
  if (f.times === undefined && state.rateLimitReset !== null && now() >= state.rateLimitReset) return null;
  state.rateLimited++;
  state.rateLimitReset ??= now() + (f.reset_in ?? 60);
  const docs = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
  if (f.secondary) {
    return new HttpError(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.", {
      docs,
      headers: { "retry-after": String(Math.max(state.rateLimitReset - now(), 0)) },
    });
  }
  return new HttpError(403, "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.", {
    docs,
    headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(state.rateLimitReset), "x-ratelimit-used": "5000" },
  });
}

function injectedError(route, method) {
  for (const [i, f] of (scenario.faults.errors ?? []).entries()) {
    if (f.route !== route && f.route !== `${method} ${route}`) continue;
    const count = state.errorCounts.get(i) ?? 0;
    if (f.times !== undefined && count >= f.times) continue;
    state.errorCounts.set(i, count + 1);
    return new HttpError(f.status ?? 500, f.message ?? "Server Error", { headers: f.headers ?? {} });
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
  for (const [k, v] of searchParams) {
    if (k in q) q[k] = [].concat(q[k], v);
    else q[k] = v;
  }
  return q;
}

function record(entry) {
  appendFileSync(args.log, `${JSON.stringify(entry)}\n`);
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "x-github-media-type": "github.v3; format=json",
    "x-ratelimit-limit": "5000",
    "x-ratelimit-remaining": "4999",
    "x-ratelimit-reset": String(now() + 3600),
    "x-ratelimit-used": "1",
    "x-ratelimit-resource": "core",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function handle(req, res) {
  const rawBody = await readBody(req);
  // Behind nginx (GithubApi::behind_nginx) the client's scheme and host, for Link and URLs.
  const scheme = req.headers["x-forwarded-proto"] === "https" ? "https" : "http";
  const base0 = `${scheme}://${req.headers.host ?? "127.0.0.1"}`;
  const url = new URL(req.url, base0);

  // The harness's own door: replace the scenario while running (not part of GitHub's API).
  if (url.pathname === "/_kalandra/scenario" && req.method === "PUT") {
    try {
      loadScenario(JSON.parse(rawBody.toString("utf8")));
      return send(res, 204);
    } catch (e) {
      return send(res, 400, { message: String(e.message) });
    }
  }

  const prefix = url.pathname === "/api/v3" || url.pathname.startsWith("/api/v3/") ? "/api/v3" : "";
  const pathname = url.pathname.slice(prefix.length) || "/";
  const base = base0 + prefix;
  const query = queryObject(url.searchParams);
  const entry = {
    time: new Date().toISOString(),
    method: req.method,
    path: url.pathname,
    prefix,
    route: null,
    query,
    body: null,
    auth: { kind: "none" },
    headers: {
      user_agent: req.headers["user-agent"] ?? null,
      accept: req.headers.accept ?? null,
      api_version: req.headers["x-github-api-version"] ?? null,
    },
    status: 0,
    violations: [],
  };
  let status, body, headers;
  try {
    const checked = checkRequest({ method: req.method, pathname, query, headers: req.headers, rawBody });
    entry.route = checked.route;
    entry.body = checked.body ?? (rawBody.length ? rawBody.toString("utf8") : null);
    // GitHub refuses requests without a User-Agent; the description does not say so.
    if (!req.headers["user-agent"]) {
      checked.violations.push("no User-Agent header (GitHub refuses such requests with 403)");
    }
    if (checked.violations.length) {
      entry.violations = checked.violations;
      throw new HttpError(400, `contract violation: ${checked.violations.join("; ")}`, { docs: checked.operation?.externalDocs?.url });
    }
    entry.auth = { kind: authKind(req.headers.authorization) };
    const auth = authenticate(req);
    entry.auth = {
      kind: auth.kind,
      app_id: auth.app?.id ?? null,
      installation_id: auth.installation?.id ?? null,
    };
    const fault = rateLimitFault(checked.route, req.method) ?? injectedError(checked.route, req.method);
    if (fault) throw fault;
    const handler = handlers[`${req.method} ${checked.route}`];
    if (!handler) {
      entry.unimplemented = true;
      throw new HttpError(404, `Not Found (the contract server does not implement ${req.method} ${checked.route})`);
    }
    ({ status, body, headers } = handler({ params: checked.params, auth, body: checked.body, base, url: url.href }));
    const wrong = checkResponse(checked.operation, status, body);
    if (wrong.length) {
      entry.violations = wrong.map((w) => `the contract server's own answer: ${w}`);
    }
  } catch (e) {
    if (!(e instanceof HttpError)) {
      entry.violations.push(`the contract server failed: ${e.stack ?? e}`);
      status = 500;
      body = { message: `contract server error: ${e.message}` };
    } else {
      status = e.status;
      body = { message: e.message, documentation_url: e.extra.docs ?? DOCS };
      if (status === 404 || status === 422) body.status = String(status);
      if (e.extra.errors) body.errors = e.extra.errors;
      headers = e.extra.headers;
    }
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
  process.stdout.write(`listening http://127.0.0.1:${server.address().port} (spec @octokit/openapi ${specVersion}, ${Object.keys(spec.paths).length} paths)\n`);
});

// Never outlive the test: the harness holds our stdin open and it closes when the test ends,
// however it ends.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
process.on("SIGTERM", () => process.exit(0));
