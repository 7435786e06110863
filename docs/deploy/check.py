#!/usr/bin/env python3
"""Offline checks of the manifests in docs/deploy/ (no cluster needed).

    python3 docs/deploy/check.py                       # YAML + consistency checks
    python3 docs/deploy/check.py --kalandra PATH       # + `kalandra config check` of the ConfigMap's file,
                                                       #   and the Deployment's watch command run for real

Always (PyYAML; Debian's python3-yaml):
  * every file parses as YAML, every document has apiVersion, kind and metadata.name;
  * the CronJob's jobTemplate.spec is the Job's spec (activeDeadlineSeconds aside);
  * N agrees: spec.completions == KALANDRA_SHARDS, parallelism <= N, and the command is
    `kalandra sync --config /etc/kalandra/mirrors.toml --shard $(JOB_COMPLETION_INDEX)/$(KALANDRA_SHARDS)
    --jobs 16 --json`;
  * every $(VAR) in args is defined in the container's env;
  * every Secret/ConfigMap the pods refer to (and every key) exists in these files;
  * mirrors.toml parses as TOML and every *_token_env it names is set in the pod's env;
  * non-root, readOnlyRootFilesystem, no privilege escalation, memory limit set;
  * deployment.yaml (kalandra watch): one replica, Recreate, the command, the grace
    period longer than --grace, a port named `metrics` that is --listen's port, the
    probes on /healthz and /readyz through it, the Service selecting the watch pod (and
    not the Job's) with a port named `metrics`, servicemonitor.yaml selecting that Service
    and port;
  * packaging/Containerfile agrees with the pods: USER = runAsUser:runAsGroup, HOME,
    EXPOSE = the metrics port, ENTRYPOINT = command.
With --kalandra PATH: `kalandra config check` of the ConfigMap's mirrors.toml, and the
Deployment's watch command run (on a free loopback port): /healthz, /readyz and /metrics
answer 200, SIGTERM ends it with 0 within --grace.
If the kubernetes-validate package is importable (PyPI; `pip install kubernetes-validate`
in a venv), every document is also validated, strictly (unknown fields are errors),
against the Kubernetes JSON schemas it ships, for --k8s-version (default 1.33.0); the
ServiceMonitor is a CRD it has no schema for, and is skipped (its shape is checked above).
Exits non-zero on the first failed check; says which optional checks were skipped.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CONTAINERFILE = HERE.parent.parent / "packaging" / "Containerfile"
FILES = ("configmap.yaml", "secret.example.yaml", "job.yaml", "cronjob.yaml", "deployment.yaml",
         "servicemonitor.yaml")
COMMAND = ["kalandra", "sync", "--config", "/etc/kalandra/mirrors.toml", "--shard",
           "$(JOB_COMPLETION_INDEX)/$(KALANDRA_SHARDS)", "--jobs", "16", "--json"]
WATCH_COMMAND = ["kalandra", "watch", "--config", "/etc/kalandra/mirrors.toml", "--listen",
                 "0.0.0.0:9180", "--jobs", "16", "--grace", "30", "--log-format", "json"]
# The keys of a custom resource that kubernetes-validate has no schema for.
CRDS = {"ServiceMonitor"}


def fail(msg: str) -> None:
    sys.exit(f"FAIL: {msg}")


def check_container(what: str, pod: dict, docs: dict, token_envs: set[str]) -> dict:
    """What every kalandra pod must get right; returns the container."""
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(c["args"])):
        if var not in env:
            fail(f"{what}: $({var}) is used in args but not defined in env")
    missing = token_envs - set(env)
    if missing:
        fail(f"{what}: mirrors.toml references {sorted(missing)}, not set in the container's env")
    secrets = {d["metadata"]["name"]: d for d in docs.get("Secret", [])}
    maps = {d["metadata"]["name"]: d for d in docs.get("ConfigMap", [])}
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            s = secrets.get(ref["name"])
            if not s or ref["key"] not in s.get("stringData", {}) | s.get("data", {}):
                fail(f"{what}: env {e['name']} refers to {ref['name']}/{ref['key']}, not in secret.example.yaml")
    for v in pod.get("volumes", []):
        if "configMap" in v and v["configMap"]["name"] not in maps:
            fail(f"{what}: volume {v['name']} refers to a ConfigMap not in configmap.yaml")
        if "secret" in v and v["secret"]["secretName"] not in secrets:
            fail(f"{what}: volume {v['name']} refers to a Secret not in secret.example.yaml")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    if "/etc/kalandra" not in mounts or not all(m.get("readOnly") for m in mounts.values()):
        fail(f"{what}: the config must be mounted at /etc/kalandra, every mount read-only")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not (psc.get("runAsNonRoot") and psc.get("runAsUser", 0) != 0):
        fail(f"{what}: the pod must run as a non-root user")
    if not (csc.get("readOnlyRootFilesystem") and csc.get("allowPrivilegeEscalation") is False):
        fail(f"{what}: readOnlyRootFilesystem and allowPrivilegeEscalation: false are required")
    if "memory" not in c.get("resources", {}).get("limits", {}):
        fail(f"{what}: no memory limit")
    return c


def check_pod(what: str, job_spec: dict, docs: dict, token_envs: set[str]) -> None:
    pod = job_spec["template"]["spec"]
    if job_spec.get("completionMode") != "Indexed":
        fail(f"{what}: completionMode is not Indexed")
    c = check_container(what, pod, docs, token_envs)
    env = {e["name"]: e for e in c.get("env", [])}
    n = int(env["KALANDRA_SHARDS"]["value"])
    if job_spec["completions"] != n:
        fail(f"{what}: completions {job_spec['completions']} != KALANDRA_SHARDS {n}")
    if not 1 <= job_spec.get("parallelism", n) <= n:
        fail(f"{what}: parallelism must be 1..N")
    if c["command"] + c["args"] != COMMAND:
        fail(f"{what}: command is {c['command'] + c['args']}")
    if pod.get("restartPolicy") != "Never":
        fail(f"{what}: restartPolicy must be Never (podFailurePolicy needs it)")


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_watch(docs: dict, token_envs: set[str], job_pod_labels: list[dict]) -> dict:
    """deployment.yaml and servicemonitor.yaml; returns the watch container."""
    what = "deployment.yaml"
    (dep,) = docs["Deployment"]
    spec = dep["spec"]
    if spec.get("replicas") != 1:
        fail(f"{what}: replicas must be 1 (each replica syncs every mirror)")
    if spec.get("strategy", {}).get("type") != "Recreate":
        fail(f"{what}: strategy must be Recreate (a rolling update runs two pods at once)")
    labels = spec["template"]["metadata"]["labels"]
    if not selects(spec["selector"]["matchLabels"], labels):
        fail(f"{what}: the selector does not match the pod template's labels")
    pod = spec["template"]["spec"]
    c = check_container(what, pod, docs, token_envs)
    argv = c["command"] + c["args"]
    if argv != WATCH_COMMAND:
        fail(f"{what}: command is {argv}")
    grace = int(argv[argv.index("--grace") + 1])
    if pod.get("terminationGracePeriodSeconds", 30) <= grace:
        fail(f"{what}: terminationGracePeriodSeconds must exceed --grace {grace}")
    listen_port = int(argv[argv.index("--listen") + 1].rsplit(":", 1)[1])
    ports = {p["name"]: p for p in c.get("ports", [])}
    if ports.get("metrics", {}).get("containerPort") != listen_port:
        fail(f"{what}: no container port named metrics = --listen's port {listen_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("metrics", listen_port):
            fail(f"{what}: {probe} must GET {path} on the metrics port")
    (svc,) = [s for s in docs.get("Service", []) if s["metadata"]["name"] == dep["metadata"]["name"]]
    if not selects(svc["spec"]["selector"], labels):
        fail(f"{what}: the Service does not select the watch pod")
    if any(selects(svc["spec"]["selector"], job) for job in job_pod_labels):
        fail(f"{what}: the Service also selects the Job's pods")
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    if "metrics" not in sports or sports["metrics"].get("targetPort") not in ("metrics", listen_port):
        fail(f"{what}: the Service needs a port named metrics that targets the container's")
    (sm,) = docs["ServiceMonitor"]
    if not selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]):
        fail("servicemonitor.yaml: its selector does not match the Service's labels")
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in sports or ep.get("path", "/metrics") != "/metrics":
            fail(f"servicemonitor.yaml: endpoint {ep} is not the Service's metrics port and /metrics")
    return c


def check_containerfile(pod: dict, c: dict) -> None:
    """packaging/Containerfile's runtime stage against the pods that run its image."""
    lines = re.sub(r"\\\n", " ", CONTAINERFILE.read_text()).splitlines()
    runtime = lines[max(i for i, l in enumerate(lines) if l.startswith("FROM ")):]
    inst: dict[str, list[str]] = {}
    for line in runtime:
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            inst.setdefault(word.upper(), []).append(rest.strip())
    psc = pod["securityContext"]
    if inst.get("USER") != [f"{psc['runAsUser']}:{psc['runAsGroup']}"]:
        fail(f"Containerfile: USER {inst.get('USER')} is not runAsUser:runAsGroup of the pods")
    env = {e["name"]: e.get("value") for e in c["env"]}
    if f"HOME={env['HOME']}" not in " ".join(inst.get("ENV", [])).split():
        fail(f"Containerfile: ENV HOME is not the pods' HOME {env['HOME']}")
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
    if inst.get("EXPOSE") != [str(port)]:
        fail(f"Containerfile: EXPOSE {inst.get('EXPOSE')} is not the metrics port {port}")
    if json.loads(inst["ENTRYPOINT"][0]) != c["command"]:
        fail("Containerfile: ENTRYPOINT is not the pods' command")
    cmd = json.loads(inst["CMD"][0])
    if cmd[:3] != c["args"][:3] or "--listen" not in cmd:
        fail(f"Containerfile: CMD {cmd} does not start like the Deployment's args")


def run_watch(kalandra: str, argv: list[str], config: Path, env: dict) -> None:
    """Runs the Deployment's watch command (its --listen on a free loopback port, the
    config from a temporary file): the probes' paths answer 200, /metrics is served,
    SIGTERM ends it with 0 within --grace. The mirrors' servers do not exist; their
    syncs fail, which is not what this checks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = list(argv)
    argv[0] = kalandra
    argv[argv.index("--listen") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("--config") + 1] = str(config)
    grace = int(argv[argv.index("--grace") + 1])
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        got: dict[str, int] = {}
        while time.monotonic() < deadline and len(got) < 3:
            for path in ("/healthz", "/readyz", "/metrics"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                        got[path] = r.status
                except OSError:
                    pass
            if proc.poll() is not None:
                fail(f"kalandra watch exited {proc.returncode}: {proc.stderr.read()}")
            time.sleep(0.2)
        if got != {"/healthz": 200, "/readyz": 200, "/metrics": 200}:
            fail(f"kalandra watch: the probes' paths answered {got}")
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=grace + 5)
        except subprocess.TimeoutExpired:
            fail(f"kalandra watch did not stop within --grace {grace} s of SIGTERM")
        if code != 0:
            fail(f"kalandra watch exited {code} after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kalandra", help="also run `kalandra config check` on the ConfigMap's mirrors.toml")
    ap.add_argument("--k8s-version", default="1.33.0")
    a = ap.parse_args()

    docs: dict[str, list[dict]] = {}
    per_file: dict[str, list[dict]] = {}
    for f in FILES:
        ds = [d for d in yaml.safe_load_all((HERE / f).read_text()) if d is not None]
        for d in ds:
            if not (d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name")):
                fail(f"{f}: a document lacks apiVersion, kind or metadata.name")
            docs.setdefault(d["kind"], []).append(d)
        per_file[f] = ds
    print(f"ok: YAML parses ({sum(len(v) for v in per_file.values())} documents in {len(FILES)} files)")

    (cm,) = docs["ConfigMap"]
    toml_text = cm["data"]["mirrors.toml"]
    cfg = tomllib.loads(toml_text)
    token_envs: set[str] = set()
    for section in [cfg.get("defaults", {}), *cfg.get("mirror", []), *cfg.get("template", [])]:
        token_envs |= {v for k, v in section.items() if k.endswith("_env")}
    print(f"ok: mirrors.toml parses as TOML; it names the variables {sorted(token_envs)}")

    (job,) = docs["Job"]
    (cron,) = docs["CronJob"]
    check_pod("job.yaml", job["spec"], docs, token_envs)
    check_pod("cronjob.yaml", cron["spec"]["jobTemplate"]["spec"], docs, token_envs)
    a_spec, b_spec = copy.deepcopy(job["spec"]), copy.deepcopy(cron["spec"]["jobTemplate"]["spec"])
    for s in (a_spec, b_spec):
        s.pop("activeDeadlineSeconds", None)
    if a_spec != b_spec:
        fail("cronjob.yaml's jobTemplate.spec differs from job.yaml's spec")
    print("ok: consistency (N, command, $(VAR)s, Secret/ConfigMap references, token variables, "
          "security context, CronJob = Job)")
    job_labels = [job["spec"]["template"]["metadata"].get("labels", {}),
                  cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})]
    watch = check_watch(docs, token_envs, job_labels)
    print("ok: watch (one replica, Recreate, command, grace period > --grace, metrics port, probes, "
          "Service and ServiceMonitor)")
    (dep,) = docs["Deployment"]
    check_containerfile(dep["spec"]["template"]["spec"], watch)
    print("ok: packaging/Containerfile agrees (USER, HOME, EXPOSE, ENTRYPOINT, CMD)")

    try:
        import kubernetes_validate  # type: ignore
    except ImportError:
        print("skipped: schema validation (the kubernetes-validate package is not installed: "
              "python3 -m venv v && v/bin/pip install kubernetes-validate && v/bin/python docs/deploy/check.py)")
    else:
        for f, ds in per_file.items():
            for d in ds:
                if d["kind"] in CRDS:
                    print(f"skipped: schema validation of {f} ({d['kind']} is a custom resource)")
                    continue
                try:
                    kubernetes_validate.validate(d, a.k8s_version, strict=True)
                except kubernetes_validate.utils.ValidationError as e:
                    fail(f"{f}: {d['kind']}/{d['metadata']['name']}: {e.message} at "
                         f"{'.'.join(str(p) for p in e.path)}")
        print(f"ok: every document validates strictly against the Kubernetes {a.k8s_version} schemas "
              f"(kubernetes-validate {getattr(kubernetes_validate, '__version__', '?')})")

    if a.kalandra:
        with tempfile.TemporaryDirectory() as t:
            p = Path(t) / "mirrors.toml"
            p.write_text(toml_text)
            e = dict(os.environ, **{v: "dummy" for v in token_envs})
            r = subprocess.run([a.kalandra, "config", "check", str(p)], env=e, capture_output=True, text=True)
            if r.returncode:
                fail(f"kalandra config check: exit {r.returncode}\n{r.stdout}{r.stderr}")
            print("ok: kalandra config check accepts mirrors.toml")
            run_watch(a.kalandra, watch["command"] + watch["args"], p, e)
        print("ok: the Deployment's watch command serves /healthz, /readyz and /metrics, "
              "and exits 0 on SIGTERM")
    else:
        print("skipped: kalandra config check and the watch command (pass --kalandra PATH)")


if __name__ == "__main__":
    main()
