#!/usr/bin/env python3
"""Checks the deployment and monitoring files under deploy/ (run through tests/deploy/run.sh).

- dashboards: up to date with their generator, JSON, schemaVersion, stable uids, unique panel
  ids, every panel and target on the `${datasource}` variable, units and legends, every seed
  metric on some panel;
- Grafana provisioning, alert rules (YAML, labels and annotations; `promtool check rules` when
  promtool exists), the compose file, the Dockerfile and .dockerignore;
- the Helm chart: `helm lint` and `helm template` when helm exists, else rendered by
  tests/deploy/helmrender (Go's text/template with Debian's Sprig, as Helm does) when go and
  golang-github-masterminds-sprig-dev exist; the manifests are YAML-parsed, checked with
  kubernetes-validate and for what the chart promises; invalid values must be refused;
- SLUICE_* settings of the image, compose file and chart are accepted by `sluice config print`;
  the image, compose and chart turn self-monitoring on, Grafana's Sluice data sources read
  `/v1/databases/_monitoring` of the primary and of the replica;
- live: a primary and a registered replica (target/debug/sluice or $SLUICE_BIN) with tokens and
  self-monitoring every second take ~10 s of mixed load (line protocol, batched and buffered
  points, buffered vectors, searches, queries, 4xx answers, admin flushes, a 429 and 503s from
  admission control, a refused WAL batch); every metric a dashboard or alert names exists in
  their /metrics; each node's `_monitoring` holds its own samples; EVERY dashboard expression
  has data in `_monitoring` (instant query, else query_range over the last minute; primary,
  else replica), every alert rule parses there and has data once its threshold comparison is
  removed (strip_threshold), except the rules in ALERT_EXCEPTIONS, printed with their reason
  and checked another way; when `prometheus` exists it scrapes both servers during the load and
  remote-writes into a Sluice database, and every expression is evaluated on both (every
  dashboard expression and every alert without its threshold must have data on Prometheus,
  every seed metric panel on both).

Prints one line per check and `deploy: N passed, M failed`; exits 1 on any failure.
"""

import argparse
import base64
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
CHART = DEPLOY / "helm" / "sluice"
HERE = pathlib.Path(__file__).resolve().parent

DASHBOARD_UIDS = {
    "overview.json": "sluice-overview",
    "ts_auto_buffer.json": "sluice-ts-auto-buffer",
    "vector_auto_buffer.json": "sluice-vector-auto-buffer",
    "compressed_wal_shipping.json": "sluice-wal-shipping",
}
SEED_METRICS = [
    "ts_auto_buffer_points_buffered_total",
    "ts_auto_buffer_points_flushed_total",
    "ts_auto_buffer_flush_count_total",
    "ts_auto_buffer_compression_ratio",
    "ts_auto_buffer_current_size",
    "vector_auto_buffer_vectors_buffered_total",
    "vector_auto_buffer_vectors_flushed_total",
    "vector_auto_buffer_current_size",
    "wal_shipper_bytes_uncompressed_total",
    "wal_shipper_bytes_shipped_total",
    "wal_shipper_compression_ratio",
    "wal_shipper_batches_total",
]
# The server's process and self-monitoring metrics: each must be on the overview dashboard.
PROCESS_METRICS = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_threads",
    "process_start_time_seconds",
    "monitoring_self_scrapes_total",
    "monitoring_self_scrape_seconds_total",
    "monitoring_self_scrape_samples",
    "monitoring_self_scrape_failures_total",
]
# Series the dashboards and alerts read that Sluice does not export: Prometheus's own `up`.
EXTERNAL_METRICS = {"up"}
DS = {"type": "prometheus", "uid": "${datasource}"}

PROMQL_WORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
    "group_right", "inf", "nan", "start", "end",
}


class Checks:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.verbose = verbose
        self.notes = []

    def say(self, msg):
        """A line under the current check's result (printed after it)."""
        self.notes.append(msg)

    def run(self, name, fn, *args):
        """Runs one check; prints its result, then the lines it added with say()."""
        started = time.time()
        detail = None
        try:
            detail = fn(*args)
        except SkipCheck as e:
            self.skipped += 1
            print(f"SKIP {name}: {e}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
            self.failed += 1
            msg = str(e) or type(e).__name__
            print(f"FAIL {name}: {msg}")
        else:
            self.passed += 1
            print(f"ok   {name}" + (f" ({detail})" if isinstance(detail, str) and detail else ""))
        if self.verbose:
            print(f"     {time.time() - started:.1f} s")
        for n in self.notes:
            print("     " + n)
        self.notes = []
        return detail


class SkipCheck(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


# ---------------------------------------------------------------------------------------------
# Dashboards

def load_dashboards():
    return {name: json.loads((DASHBOARDS / name).read_text()) for name in DASHBOARD_UIDS}


def all_panels(d):
    for p in d.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_exprs(dashboards):
    """(dashboard, panel title, expr) of every target."""
    out = []
    for name, d in dashboards.items():
        for p in all_panels(d):
            for t in p.get("targets", []):
                out.append((name, f'{p.get("title", "")} [{t.get("refId")}]', t.get("expr", "")))
    return out


def check_generator():
    r = subprocess.run([sys.executable, str(DEPLOY / "grafana" / "generate_dashboards.py"), "--check"],
                       capture_output=True, text=True)
    check(r.returncode == 0, (r.stdout + r.stderr).strip())


def check_dashboard(name, d):
    check(d.get("schemaVersion") == 39, f"schemaVersion {d.get('schemaVersion')} (want 39)")
    check(d.get("uid") == DASHBOARD_UIDS[name], f"uid {d.get('uid')!r} (want {DASHBOARD_UIDS[name]!r})")
    check(d.get("title"), "no title")
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    check(ds and ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          "no `datasource` template variable of type datasource/prometheus")
    for v in variables.values():
        if v["type"] == "query":
            check(v.get("datasource") == DS, f"variable {v['name']} not on ${{datasource}}")
    ids = [p.get("id") for p in all_panels(d)]
    check(all(isinstance(i, int) for i in ids), "a panel without an integer id")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    check(not dup, f"duplicate panel ids {dup}")
    n_targets = 0
    for p in all_panels(d):
        title = p.get("title", "?")
        targets = p.get("targets", [])
        if p.get("type") in ("row", "text"):
            check(not targets, f"panel {title!r} ({p['type']}) has targets")
            continue
        check(targets, f"panel {title!r} has no targets")
        check(p.get("datasource") == DS, f"panel {title!r} datasource {p.get('datasource')}")
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        check(unit, f"panel {title!r} has no unit")
        gp = p.get("gridPos", {})
        check(all(k in gp for k in "hwxy") and gp["x"] + gp["w"] <= 24, f"panel {title!r} gridPos {gp}")
        for t in targets:
            n_targets += 1
            check(t.get("datasource") == DS, f"target {t.get('refId')} of {title!r} not on ${{datasource}}")
            check(t.get("expr"), f"target {t.get('refId')} of {title!r} has no expr")
            if p.get("type") == "timeseries":
                check(t.get("legendFormat"), f"target {t.get('refId')} of {title!r} has no legend")
        refs = [t.get("refId") for t in targets]
        check(len(set(refs)) == len(refs), f"panel {title!r} repeats a refId")
    return f"{len(ids)} panels, {n_targets} targets"


def check_dashboards_unique(dashboards):
    uids = [d["uid"] for d in dashboards.values()]
    check(len(set(uids)) == len(uids), f"duplicate uids {uids}")


def check_seed_metrics(dashboards):
    text = "\n".join(e for _, _, e in dashboard_exprs(dashboards))
    missing = [m for m in SEED_METRICS if not re.search(rf"\b{m}\b", text)]
    check(not missing, f"not on any panel: {missing}")
    # The three feature dashboards carry their own metrics.
    for name, prefix in [("ts_auto_buffer.json", "ts_auto_buffer_"),
                         ("vector_auto_buffer.json", "vector_auto_buffer_"),
                         ("compressed_wal_shipping.json", "wal_shipper_")]:
        own = "\n".join(e for n, _, e in dashboard_exprs(dashboards) if n == name)
        absent = [m for m in SEED_METRICS if m.startswith(prefix) and not re.search(rf"\b{m}\b", own)]
        check(not absent, f"{name} lacks {absent}")
    overview = "\n".join(e for n, _, e in dashboard_exprs(dashboards) if n == "overview.json")
    absent = [m for m in PROCESS_METRICS if not re.search(rf"\b{m}\b", overview)]
    check(not absent, f"overview.json lacks the process/self-monitoring metrics {absent}")
    return f"{len(SEED_METRICS)} seed metrics, {len(PROCESS_METRICS)} process/self-monitoring metrics"


def metric_names(expr):
    """The metric names a PromQL expression selects (a lexical approximation)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![0-9.a-zA-Z_:$])([a-zA-Z_:][a-zA-Z0-9_:]*)", s):
        word = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


# ---------------------------------------------------------------------------------------------
# Provisioning, alerts, compose, Dockerfile

def check_provisioning():
    prov = DEPLOY / "grafana" / "provisioning"
    uids = set()
    for f in ["datasources/sluice.yml", "datasources/prometheus.yml"]:
        doc = yaml.safe_load((prov / f).read_text())
        check(doc.get("apiVersion") == 1, f"{f}: apiVersion")
        for ds in doc["datasources"]:
            check(ds["type"] == "prometheus", f"{f}: {ds['name']} is not of type prometheus")
            check(ds.get("uid"), f"{f}: {ds['name']} has no uid")
            uids.add(ds["uid"])
    check(uids == {"sluice", "sluice-replica", "prometheus"}, f"data source uids {uids}")
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    genv = compose["services"]["grafana"]["environment"]
    # The Sluice data sources read each node's self-monitoring database `_monitoring`.
    want = {"sluice": ("SLUICE_URL", "primary"), "sluice-replica": ("SLUICE_REPLICA_URL", "replica")}
    for ds in yaml.safe_load((prov / "datasources/sluice.yml").read_text())["datasources"]:
        check("${SLUICE_TOKEN}" in ds["secureJsonData"]["httpHeaderValue1"], f"{ds['name']}: token not from the environment")
        var, node = want[ds["uid"]]
        check(ds["url"] == "${" + var + "}", f"{ds['name']}: url {ds['url']} (want ${{{var}}})")
        check(genv.get(var) == f"http://{node}:8080/v1/databases/_monitoring",
              f"compose grafana {var}={genv.get(var)} (want http://{node}:8080/v1/databases/_monitoring)")
    dash = yaml.safe_load((prov / "dashboards/sluice.yml").read_text())
    paths = [p["options"]["path"] for p in dash["providers"]]
    mounts = compose["services"]["grafana"]["volumes"]
    for path in paths:
        check(any(v.startswith("./grafana/dashboards:" + path) for v in mounts),
              f"dashboard path {path} is not where compose mounts deploy/grafana/dashboards")


def load_alerts():
    return yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())


def alert_exprs(alerts):
    return [(r["alert"], r["expr"]) for g in alerts["groups"] for r in g["rules"] if "alert" in r]


def check_alerts_structure(alerts):
    names = []
    for g in alerts["groups"]:
        for r in g["rules"]:
            check("alert" in r and "expr" in r, f"rule without alert/expr in {g['name']}")
            names.append(r["alert"])
            check(r.get("labels", {}).get("severity") in ("critical", "warning", "info"),
                  f"{r['alert']}: severity label")
            ann = r.get("annotations", {})
            check(ann.get("summary") and ann.get("description"), f"{r['alert']}: summary/description")
    check(len(set(names)) == len(names), "duplicate alert names")
    wanted = {
        "server down": "SluiceDown", "error rate": "SluiceServerErrors",
        "fsync latency": "SluiceWalFsyncSlow", "buffer overflow": "SluiceBufferOverflow",
        "flush stalls": "SluiceTsBufferNotFlushing", "admission": "SluiceAdmissionRefusals",
        "replication lag": "SluiceReplicationLagHigh", "replica unhealthy": "SluiceReplicationShippingFailing",
        "memory": "SluiceMemoryHigh", "restart": "SluiceRestarted",
        "self-monitoring": "SluiceSelfMonitoringFailing",
    }
    missing = [k for k, v in wanted.items() if v not in names]
    check(not missing, f"no rule for {missing}")
    return f"{len(names)} rules"


def check_promtool():
    promtool = shutil.which("promtool")
    if not promtool:
        raise SkipCheck("promtool not found (apt-get install prometheus)")
    r = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                       capture_output=True, text=True)
    check(r.returncode == 0, (r.stdout + r.stderr).strip())
    # The compose Prometheus config names the rules by their in-container path: check a copy
    # that names this file.
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    cfg["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(cfg, f)
    try:
        r2 = subprocess.run([promtool, "check", "config", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    check(r2.returncode == 0, "prometheus.yml: " + (r2.stdout + r2.stderr).strip())
    return (r.stdout.strip().splitlines() or [""])[-1].strip()


def check_compose():
    path = DEPLOY / "docker-compose.yml"
    doc = yaml.safe_load(path.read_text())
    services = doc["services"]
    for s in ["primary", "replica", "register-replica", "prometheus", "grafana"]:
        check(s in services, f"no service {s}")
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = (path.parent / build["context"]).resolve()
            check(ctx.is_dir(), f"{name}: build context {ctx} missing")
            check((ctx / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing")
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                check((path.parent / src).exists(), f"{name}: mount source {src} missing")
            else:
                check(src in (doc.get("volumes") or {}), f"{name}: volume {src} not declared")
        for dep in svc.get("depends_on", []) or []:
            check(dep in services, f"{name}: depends on unknown {dep}")
    check(services["replica"]["environment"].get("SLUICE_ROLE") == "replica", "replica role")
    reg = " ".join(services["register-replica"]["command"])
    check("/api/v1/replication/replicas" in reg and "http://replica:8080" in reg,
          "register-replica does not register the replica")
    for name in ["primary", "replica"]:
        for p in services[name].get("ports", []):
            check(str(p).startswith("127.0.0.1:"), f"{name} publishes {p} beyond loopback")
        # Self-monitoring on both nodes (each keeps its own `_monitoring`).
        interval = services[name]["environment"].get("SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS",
                                                     dockerfile_env().get("SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS", "0"))
        check(int(interval) >= 1000, f"{name}: self-monitoring off ({interval})")
    return f"{len(services)} services"


def dockerfile_instructions():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    out, cur = [], ""
    for line in lines:
        if line.strip().startswith("#") and not cur:
            continue
        cur += line.rstrip("\\") + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if cur.strip():
                word, _, rest = cur.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def check_dockerfile():
    ins = dockerfile_instructions()
    froms = [r for w, r in ins if w == "FROM"]
    check(len(froms) >= 2, "not a multi-stage build")
    args = dict(r.split("=", 1) for w, r in ins if w == "ARG" and "=" in r)
    check(args.get("RUST_IMAGE") == "rust:1-bookworm", "build image is not rust:1-bookworm")
    check(args.get("RUNTIME_IMAGE") in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12"),
          "runtime image")
    runs = " ".join(r for w, r in ins if w == "RUN")
    check("cargo build --release --locked -p sluice" in runs, "cargo build --release --locked -p sluice")
    user = [r for w, r in ins if w == "USER"]
    check(user and not user[-1].startswith(("root", "0")), f"runs as {user}")
    check(any(w == "VOLUME" and "/data" in r for w, r in ins), "no /data volume")
    expose = " ".join(r for w, r in ins if w == "EXPOSE").split()
    check("8080" in expose and "18765" in expose, f"EXPOSE {expose}")
    hc = [r for w, r in ins if w == "HEALTHCHECK"]
    check(hc and "/readyz" in hc[0], "no HEALTHCHECK on /readyz")
    check("curl" in runs, "the runtime image has no curl for the health check")
    env = " ".join(r for w, r in ins if w == "ENV")
    for kv in ["SLUICE_HTTP_ADDR=0.0.0.0:8080", "SLUICE_WIRE_ADDR=0.0.0.0:18765", "SLUICE_DATA_DIR=/data",
               "SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS=10000"]:
        check(kv in env, f"ENV lacks {kv}")
    ignore = (ROOT / ".dockerignore").read_text().split()
    for p in ["target", ".git", "**/node_modules"]:
        check(p in ignore, f".dockerignore lacks {p}")


def dockerfile_env():
    env = {}
    for w, r in dockerfile_instructions():
        if w == "ENV":
            for kv in r.split():
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    env[k] = v
    return env


# ---------------------------------------------------------------------------------------------
# Helm

def helm_renderer(tmp):
    """A function rendering the chart with a values file, or None when neither helm nor
    go+sprig is here."""
    helm = shutil.which("helm")
    if helm:
        def render(values, name="demo", namespace="data"):
            r = subprocess.run([helm, "template", name, str(CHART), "-n", namespace, "-f", str(values)],
                               capture_output=True, text=True)
            return r.returncode, r.stdout, r.stderr
        return "helm", render
    go = shutil.which("go")
    gopath = os.environ.get("SPRIG_GOPATH", "/usr/share/gocode")
    if not go or not (pathlib.Path(gopath) / "src/github.com/Masterminds/sprig").is_dir():
        return None, None
    binary = pathlib.Path(tmp) / "helmrender"
    env = dict(os.environ, GO111MODULE="off", GOPATH=gopath, GOFLAGS="",
               GOCACHE=str(ROOT / "target" / "deploy-gocache"))
    r = subprocess.run([go, "build", "-o", str(binary), "main.go"], cwd=HERE / "helmrender",
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise AssertionError("building helmrender: " + r.stderr.strip())

    def render(values, name="demo", namespace="data"):
        r = subprocess.run([str(binary), "-f", str(values), "-name", name, "-namespace", namespace, str(CHART)],
                           capture_output=True, text=True)
        out = r.stdout.split("\n# NOTES.txt\n")[0]
        return r.returncode, out, r.stderr
    return "helmrender", render


def check_chart_meta():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    check(chart["apiVersion"] == "v2" and chart["name"] == "sluice", "Chart.yaml apiVersion/name")
    check(re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]), "chart version is not semver")
    cargo = (ROOT / "Cargo.toml").read_text()
    version = re.search(r'\[workspace\.package\]\s*version = "([^"]+)"', cargo).group(1)
    check(chart["appVersion"] == version, f"appVersion {chart['appVersion']} != workspace {version}")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    check(values["auth"]["tokens"] == {}, "values.yaml ships tokens")
    for f in ["_helpers.tpl", "NOTES.txt", "statefulset.yaml", "service.yaml", "configmap.yaml",
              "secret.yaml", "job-register-replicas.yaml", "servicemonitor.yaml"]:
        check((CHART / "templates" / f).is_file(), f"templates/{f} missing")


def helm_lint(values_files):
    helm = shutil.which("helm")
    if not helm:
        raise SkipCheck("helm not found")
    for v in values_files:
        r = subprocess.run([helm, "lint", str(CHART), "-f", str(v)], capture_output=True, text=True)
        check(r.returncode == 0, f"{v.name}: {r.stdout}{r.stderr}")


def env_of(container, configmaps):
    """A container's literal environment: its ConfigMaps, then its env (valueFrom: a dummy)."""
    env = {}
    for src in container.get("envFrom", []):
        name = src.get("configMapRef", {}).get("name")
        env.update(configmaps.get(name, {}))
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", "0123456789abcdef0123456789abcdef")
    return env


def check_rendered(values, docs, sluice_bin):
    import kubernetes_validate  # noqa: PLC0415

    vals = yaml.safe_load(values.read_text()) or {}
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
        if d["apiVersion"].startswith("monitoring.coreos.com"):
            spec = d["spec"]
            check(spec["endpoints"][0]["path"] == "/metrics", "ServiceMonitor path")
            continue
        try:
            kubernetes_validate.validate(d, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{d['kind']} {d['metadata']['name']}: {e.message} at {list(e.path)}") from None
    configmaps = {c["metadata"]["name"]: c["data"] for c in kinds.get("ConfigMap", [])}
    replicas_on = (vals.get("replicas") or {}).get("enabled", False)
    sts = kinds.get("StatefulSet", [])
    check(len(sts) == (2 if replicas_on else 1), f"{len(sts)} StatefulSets")
    for s in sts:
        name = s["metadata"]["name"]
        check(s["spec"].get("volumeClaimTemplates"), f"{name}: no volumeClaimTemplates")
        pod = s["spec"]["template"]["spec"]
        c = pod["containers"][0]
        check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: readiness probe")
        check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: liveness probe")
        check(c["resources"].get("requests"), f"{name}: no resource requests")
        check(pod["securityContext"].get("runAsNonRoot"), f"{name}: not runAsNonRoot")
        check(any(m["mountPath"] == "/data" for m in c["volumeMounts"]), f"{name}: /data not mounted")
        check(s["spec"]["serviceName"] in {x["metadata"]["name"] for x in kinds["Service"]
                                           if x["spec"].get("clusterIP") == "None"},
              f"{name}: serviceName is not a headless Service")
        env = env_of(c, configmaps)
        role = env.get("SLUICE_ROLE")
        check(role == ("replica" if name.endswith("-replica") else "primary"), f"{name}: role {role}")
        mon = {"selfScrapeIntervalMs": 10000, "retentionMs": 604800000, "replicate": False}
        mon.update(vals.get("monitoring") or {})
        for var, key in [("SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS", "selfScrapeIntervalMs"),
                         ("SLUICE_MONITORING_RETENTION_MS", "retentionMs"),
                         ("SLUICE_MONITORING_REPLICATE", "replicate")]:
            want = str(mon[key]).lower()
            check(env.get(var) == want, f"{name}: {var}={env.get(var)!r} (want {want!r} from monitoring.{key})")
        # The server itself must accept the environment (unknown or malformed SLUICE_* fail).
        if sluice_bin:
            r = subprocess.run([sluice_bin, "config", "print"], capture_output=True, text=True,
                               env={k: v for k, v in dict(os.environ, **env).items()
                                    if not k.startswith("SLUICE_") or k in env})
            check(r.returncode == 0, f"{name}: sluice config print refuses its environment: {r.stderr.strip()}")
    for sec in kinds.get("Secret", []):
        if "tokens.json" in sec.get("data", {}):
            tokens = json.loads(base64.b64decode(sec["data"]["tokens.json"]))
            for actor, entry in tokens.items():
                tok = entry if isinstance(entry, str) else entry["token"]
                check(tok.startswith("sha256:"), f"Secret holds a clear token for {actor}")
    jobs = kinds.get("Job", [])
    if replicas_on and (vals.get("replicas") or {}).get("register", {}).get("enabled", True):
        check(jobs and "post-install" in jobs[0]["metadata"]["annotations"]["helm.sh/hook"],
              "no post-install registration Job")
    sm = (vals.get("metrics") or {}).get("serviceMonitor", {}).get("enabled", False)
    check(bool(kinds.get("ServiceMonitor")) == sm, "ServiceMonitor present iff metrics.serviceMonitor.enabled")
    check(any(x["spec"].get("clusterIP") != "None" for x in kinds["Service"]), "no client Service")
    return f"{len(docs)} manifests: " + ", ".join(f"{k}×{len(v)}" for k, v in sorted(kinds.items()))


def check_invalid_values(render, values):
    expect = re.search(r"#\s*expect:\s*(.+)", values.read_text()).group(1).strip()
    rc, _, err = render(values)
    check(rc != 0, "rendered although the values are invalid")
    check(expect in err, f"error does not say {expect!r}: {err.strip()[-300:]}")


# ---------------------------------------------------------------------------------------------
# Live

# Tokens of the live servers (they listen on loopback only; made up for the run). The primary
# and the replica accept the same ones; the primary presents the admin token to the replica.
ADMIN_TOKEN = "admin-" + "a" * 26
WRITER_TOKEN = "writer-" + "w" * 25
READER_TOKEN = "grafana-" + "r" * 24
PROM_TOKEN = "prometheus-" + "p" * 21
TOKENS = {
    "admin": ADMIN_TOKEN,
    "writer": {"token": WRITER_TOKEN, "roles": {"*": "writer"}},
    "grafana": {"token": READER_TOKEN, "roles": {"*": "reader"}},
    "prometheus": {"token": PROM_TOKEN, "roles": {"monitoring": "writer"}},
}
# Self-monitoring of the live servers, every second (the smallest interval allowed).
SELF_SCRAPE_MS = 1000
# Admission limits of the live primary, small enough for the load to reach them on purpose.
MAX_IN_FLIGHT_PER_ACTOR = 6
MAX_IN_FLIGHT_TOTAL = 10
# Range queries (where an instant query is empty) cover this many seconds up to now.
RANGE_SECONDS = 60

# Alert rules whose expression without its threshold cannot have data in a server's own
# `_monitoring` on a healthy server, why, and how each is checked instead. Printed by the run.
ALERT_EXCEPTIONS = {
    "SluiceDown": (
        "prometheus",
        "`up` is recorded by a scraper, never by the server (a server cannot report itself "
        "down); checked on the Prometheus of this run: `up{...}` has data there"),
    "SluiceTargetMissing": (
        "prometheus",
        "absent(up{...}) reads the scraper's `up` (and is empty while targets exist); checked on "
        "the Prometheus of this run: its argument `up{...}` has data there"),
    "SluiceServerErrors": (
        "substitute",
        "counts 5xx answers other than 503 and 507, which only a server bug produces (an "
        "internal error, 500), so it is empty on a healthy server; checked with the matcher "
        "status!~\"503|507\" removed instead, so that the load's 503s give it data"),
}


def alert_substitute(name, expr):
    """The expression checked in place of an excepted rule's (see ALERT_EXCEPTIONS)."""
    if name == "SluiceServerErrors":
        out = expr.replace(',status!~"503|507"', "")
        check(out != expr, "SluiceServerErrors no longer has the matcher status!~\"503|507\"")
        return strip_threshold(out)
    m = re.fullmatch(r"\s*absent\((.*)\)\s*", expr, re.S)
    return m.group(1) if m else strip_threshold(expr)


def _matching(expr, i):
    """The index of the bracket closing the one at `i`."""
    depth = 0
    for j, (c, kind) in enumerate(_scan(expr)):
        if j < i or kind:
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _scan(expr):
    """(character, "str", "comment" or "") for every character of a PromQL text."""
    out, quote, comment = [], None, False
    i = 0
    while i < len(expr):
        c = expr[i]
        if comment:
            comment = c != "\n"
            out.append((c, "comment" if comment else ""))
        elif quote:
            out.append((c, "str"))
            if c == "\\" and i + 1 < len(expr):
                out.append((expr[i + 1], "str"))
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
            out.append((c, "str"))
        elif c == "#":
            comment = True
            out.append((c, "comment"))
        else:
            out.append((c, ""))
        i += 1
    return out


CMP_OPS = ("==", "!=", ">=", "<=", ">", "<")
# What may follow a binary operator: `bool`, on/ignoring (labels), group_left/right (labels).
OP_MODIFIERS = re.compile(r"\s*(?:bool\b\s*)?(?:(?:on|ignoring)\s*\([^)]*\)\s*)?"
                          r"(?:(?:group_left|group_right)\b\s*(?:\([^)]*\)\s*)?)?")
SCALAR = re.compile(r"[\s\d.eE+\-*/%^()]+|[\s\d.eE+\-*/%^()]*\b(?:inf|nan)\b[\s\d.eE+\-*/%^()]*", re.I)


def top_level_ops(expr):
    """(start, end, operator) of the set operators (or, and, unless) and comparisons at nesting
    depth 0 of a PromQL expression; strings, comments and brackets are skipped."""
    ops, depth = [], 0
    chars = _scan(expr)
    i = 0
    while i < len(chars):
        c, kind = chars[i]
        if kind:
            i += 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            two = expr[i:i + 2]
            if two in ("==", "!=", ">=", "<="):
                ops.append((i, i + 2, two))
                i += 2
                continue
            if c in "<>":
                ops.append((i, i + 1, c))
            else:
                m = re.match(r"(or|and|unless)\b", expr[i:])
                if m and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "_:")):
                    ops.append((i, i + m.end(), m.group(1)))
                    i += m.end()
                    continue
        i += 1
    return ops


def unwrap(expr):
    """The expression without comments, blank ends and parentheses around all of it."""
    e = "".join(c for c, kind in _scan(expr) if kind != "comment").strip()
    while e.startswith("(") and _matching(e, 0) == len(e) - 1:
        e = e[1:-1].strip()
    return e


def strip_threshold(expr):
    """An alert expression without its threshold comparison, as a graph of the alert would be
    drawn: `X > 0.9` → `X`, `(A > 0) and on (l) (B == 0)` → `(A) and on (l) (B)`, `A or B`
    with each side stripped; `unless` keeps its right side as it is (it only removes series).
    PromQL's precedence: `or` binds loosest, then `and`/`unless`, then comparisons; all are
    left-associative, so each level is split at its last operator."""
    e = unwrap(expr)
    ops = top_level_ops(e)
    for group in (("or",), ("and", "unless"), CMP_OPS):
        at = [o for o in ops if o[2] in group]
        if not at:
            continue
        start, end, op = at[-1]
        mod_end = OP_MODIFIERS.match(e, end).end()
        left, op_text, right = e[:start].strip(), e[start:mod_end].strip(), e[mod_end:].strip()
        if group == CMP_OPS:
            # Keep the side that is not a number (the threshold).
            if SCALAR.fullmatch(right):
                return strip_threshold(left)
            if SCALAR.fullmatch(left):
                return strip_threshold(right)
            return strip_threshold(left)
        if op == "unless":
            return f"({strip_threshold(left)}) {op_text} ({right})"
        return f"({strip_threshold(left)}) {op_text} ({strip_threshold(right)})"
    return e


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bearer(token):
    return {"authorization": f"Bearer {token}"}


def http(method, url, body=None, headers=None, timeout=10, token=None):
    data = None
    hdrs = dict(headers or {})
    if token:
        hdrs.update(bearer(token))
    if body is not None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs.setdefault("content-type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def node_env(role):
    """The SLUICE_* settings of a live node: tokens, self-monitoring every second, small
    admission limits on the primary."""
    env = {
        "SLUICE_BEARER_TOKENS_JSON": json.dumps(TOKENS),
        "SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS": str(SELF_SCRAPE_MS),
    }
    if role == "primary":
        env["SLUICE_REPLICATION_TOKEN"] = ADMIN_TOKEN
        env["SLUICE_ADMISSION_MAX_IN_FLIGHT_PER_ACTOR"] = str(MAX_IN_FLIGHT_PER_ACTOR)
        env["SLUICE_ADMISSION_MAX_IN_FLIGHT_TOTAL"] = str(MAX_IN_FLIGHT_TOTAL)
    return env


class Server:
    def __init__(self, binary, tmp, name, role="primary", extra_env=None):
        self.dir = pathlib.Path(tmp) / name
        self.dir.mkdir()
        self.log = open(self.dir / "server.log", "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["SLUICE_FEATURES_TS_AUTO_BUFFER_FLUSH_INTERVAL_MS"] = "500"
        env["SLUICE_FEATURES_VECTOR_AUTO_BUFFER_FLUSH_INTERVAL_MS"] = "500"
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", str(self.dir / "data"), "--http-addr", "127.0.0.1:0",
             "--wire-addr", "127.0.0.1:0", "--role", role],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        info = self.dir / "data" / "server.json"
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{name} exited: " + (self.dir / "server.log").read_text()[-2000:])
            if info.exists():
                try:
                    self.url = "http://" + json.loads(info.read_text())["http_addr"]
                    if http("GET", self.url + "/readyz")[0] == 200:
                        return
                except (ValueError, KeyError, OSError):
                    pass
            time.sleep(0.1)
        raise AssertionError(f"{name} did not become ready")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_traffic(url, round_no, replica_url=None):
    """One round of mixed load: writes of every kind (buffered and batched points, line
    protocol, buffered vectors, another database), reads (time-series query, vector search,
    PromQL over `_monitoring`), 4xx answers (unknown route, bad value, bad JSON, no token, a
    writer writing into `_monitoring`), replica reads and a refused replica write, and every
    third round the admin's buffer flushes. Returns {what: status}."""
    now = int(time.time() * 1000)
    st = {}
    for i in range(20):
        st["ts buffered"] = http("POST", url + "/ts/put/buffered", {
            "metric": "cpu_usage", "entity": f"s{i % 4}", "timestamp_ms": now - i,
            "value": float(i + round_no)}, token=WRITER_TOKEN)[0]
    points = [{"metric": "mem", "entity": f"h{i}", "timestamp_ms": now, "value": float(i)} for i in range(10)]
    st["ts batch"] = http("POST", url + "/ts/put/batch?ack=wal", {"points": points}, token=WRITER_TOKEN)[0]
    st["ts put"] = http("POST", url + "/ts/put", {"metric": "disk", "entity": "a", "timestamp_ms": now,
                                                  "value": 1.0}, token=WRITER_TOKEN)[0]
    st["line protocol"] = http("POST", url + "/write?precision=ms",
                               f"weather,host=station1 temp=21.5,hum=40i {now}\n"
                               f"weather,host=station2 temp=19.0,hum=52i {now}", token=WRITER_TOKEN)[0]
    for i in range(10):
        st["vectors buffered"] = http("POST", url + "/vectors/add/buffered", {
            "pk": f"doc{round_no}-{i}", "vector": [0.1 * i, 0.9, 0.2], "metadata": {"round": round_no}},
            token=WRITER_TOKEN)[0]
    st["other db"] = http("POST", url + "/v1/databases/other/ts/put/buffered",
                          {"metric": "m", "entity": "e", "timestamp_ms": now, "value": 1.0}, token=WRITER_TOKEN)[0]
    st["vector search"] = http("POST", url + "/vectors/search", {"vector": [0.1, 0.9, 0.2], "k": 3},
                               token=READER_TOKEN)[0]
    st["ts query"] = http("POST", url + "/ts/query", {"metric": "cpu_usage", "from_ms": now - 60000,
                                                      "to_ms": now + 1}, token=READER_TOKEN)[0]
    st["promql _monitoring"] = http(
        "POST", url + "/v1/databases/_monitoring/api/v1/query",
        urllib.parse.urlencode({"query": "sum(rate(http_requests_total[1m]))"}),
        {"content-type": "application/x-www-form-urlencoded"}, token=READER_TOKEN)[0]
    st["unknown route"] = http("GET", url + "/no-such-route", token=READER_TOKEN)[0]
    st["bad value"] = http("POST", url + "/ts/put", {"metric": "cpu", "entity": "a", "timestamp_ms": 1,
                                                     "value": "high"}, token=WRITER_TOKEN)[0]
    st["bad JSON"] = http("POST", url + "/ts/put/buffered", '{"metric": "cpu", "entity":',
                          {"content-type": "application/json"}, token=WRITER_TOKEN)[0]
    st["no token"] = http("POST", url + "/ts/put", {"metric": "cpu", "entity": "a", "timestamp_ms": now,
                                                    "value": 1.0})[0]
    st["writer into _monitoring"] = http(
        "POST", url + "/v1/databases/_monitoring/ts/put",
        {"metric": "fake", "entity": "e", "timestamp_ms": now, "value": 1.0}, token=WRITER_TOKEN)[0]
    if replica_url:
        st["replica query"] = http("POST", replica_url + "/ts/query", {
            "metric": "mem", "from_ms": now - 60000, "to_ms": now + 1}, token=READER_TOKEN)[0]
        st["replica write"] = http("POST", replica_url + "/ts/put", {
            "metric": "m", "entity": "e", "timestamp_ms": now, "value": 1.0}, token=WRITER_TOKEN)[0]
    if round_no % 3 == 0:
        st["ts flush"] = http("POST", url + "/ts/buffer/flush", token=ADMIN_TOKEN)[0]
        st["vector flush"] = http("POST", url + "/vectors/buffer/flush", token=ADMIN_TOKEN)[0]
    return st


TRAFFIC_EXPECT = {
    "ts buffered": 200, "ts batch": 200, "ts put": 200, "line protocol": 204, "vectors buffered": 200,
    "other db": 200, "vector search": 200, "ts query": 200, "promql _monitoring": 200,
    "unknown route": 404, "bad value": 400, "bad JSON": 400, "no token": 401,
    "writer into _monitoring": 403, "replica query": 200, "replica write": 409,
    "ts flush": 200, "vector flush": 200,
}


def hold(url, token, n):
    """`n` requests of `token`'s actor that stay in flight: their head announces a body that
    never comes (until the sockets are closed)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall((f"POST /ts/put HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                   "Content-Type: application/json\r\nContent-Length: 64\r\n\r\n").encode())
        socks.append(s)
    return socks


def admission_episode(url):
    """Admission control refusing on purpose: the writer at its in-flight limit gets 429
    (too_many_in_flight), then with the server at max_in_flight_total its buffered writes get
    503 (server_overloaded: load shedding). Returns the statuses seen."""
    now = int(time.time() * 1000)
    point = {"metric": "cpu_usage", "entity": "burst", "timestamp_ms": now, "value": 1.0}
    vector = {"pk": "burst", "vector": [0.5, 0.5, 0.5]}
    seen = {"per actor": [], "shed ts": [], "shed vectors": []}
    socks = []
    try:
        socks += hold(url, WRITER_TOKEN, MAX_IN_FLIGHT_PER_ACTOR)
        # A concurrent request of another actor (Prometheus's remote write) may take a slot for
        # a moment: try a few times.
        for _ in range(20):
            time.sleep(0.1)
            seen["per actor"].append(http("POST", url + "/ts/put/buffered", point, token=WRITER_TOKEN)[0])
            if seen["per actor"][-1] == 429:
                break
        socks += hold(url, ADMIN_TOKEN, MAX_IN_FLIGHT_PER_ACTOR)
        for _ in range(20):
            time.sleep(0.1)
            seen["shed ts"].append(http("POST", url + "/ts/put/buffered", point, token=WRITER_TOKEN)[0])
            seen["shed vectors"].append(http("POST", url + "/vectors/add/buffered", vector, token=WRITER_TOKEN)[0])
            if seen["shed ts"][-1] == 503 and seen["shed vectors"][-1] == 503:
                break
    finally:
        for s in socks:
            s.close()
    check(seen["per actor"][-1] == 429, f"no 429 at the writer's in-flight limit: {seen['per actor']}")
    check(seen["shed ts"][-1] == 503 and seen["shed vectors"][-1] == 503,
          f"no 503 at max_in_flight_total: {seen}")
    # The slots come back once the server sees the connections closed.
    deadline = time.time() + 15
    while http("POST", url + "/ts/put/buffered", point, token=WRITER_TOKEN)[0] != 200:
        check(time.time() < deadline, "admission slots not released after the held requests ended")
        time.sleep(0.2)
    return seen


def parse_metrics(text):
    """{sample name: set of label names}, plus the declared families' sample names."""
    samples, declared = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "counter":
                declared.add(name + "_total")
            elif kind == "histogram":
                declared.update({name + "_bucket", name + "_sum", name + "_count"})
            else:
                declared.add(name)
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?", line)
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or ""))
            samples.setdefault(m.group(1), set()).update(labels)
    return samples, declared


def metric_value(text, name):
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def substitute(expr):
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            .replace("$__range", "1h").replace("$job", ".*").replace("$instance", ".*")
            .replace("$db", ".*"))


def query(base, expr, at=None, window=None, token=None):
    """('success' or 'error', error text, number of series) of an instant query (at `at`, else
    now), or of a range query over the last `window` seconds (2 s steps)."""
    params = {"query": expr}
    path = "/api/v1/query"
    if window:
        end = time.time()
        params.update({"start": f"{end - window:.3f}", "end": f"{end:.3f}", "step": "2"})
        path = "/api/v1/query_range"
    elif at is not None:
        params["time"] = f"{at:.3f}"
    status, body = http("POST", base + path, urllib.parse.urlencode(params),
                        {"content-type": "application/x-www-form-urlencoded"}, timeout=30, token=token)
    try:
        doc = json.loads(body)
    except ValueError:
        return "error", f"HTTP {status}: {body[:200]}", 0
    if doc.get("status") != "success":
        return "error", f"HTTP {status}: {doc.get('errorType')}: {doc.get('error')}", 0
    result = doc["data"]["result"]
    n = len(result) if isinstance(result, list) else 1
    return "success", "", n


def has_data(bases, expr, token=None):
    """Where `expr` first has data: (base index, 'instant' or 'range'), else None; and the
    first error, if any."""
    err = None
    for kind in ("instant", "range"):
        for i, base in enumerate(bases):
            status, e, n = query(base, expr, window=RANGE_SECONDS if kind == "range" else None, token=token)
            if status != "success":
                err = err or e
            elif n:
                return (i, kind), err
    return None, err


def start_prometheus(tmp, targets, remote_write_url):
    prom = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not prom:
        return None, None
    port = free_port()
    cfg = pathlib.Path(tmp) / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "sluice", "static_configs": [{"targets": targets}]}],
        "remote_write": [{"url": remote_write_url,
                          "authorization": {"credentials": PROM_TOKEN},
                          "queue_config": {"batch_send_deadline": "500ms", "min_backoff": "100ms"}}],
    }))
    log = open(pathlib.Path(tmp) / "prometheus.log", "w")
    proc = subprocess.Popen([prom, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/prom-data",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError("prometheus exited: " + (pathlib.Path(tmp) / "prometheus.log").read_text()[-1500:])
        try:
            if http("GET", url + "/-/ready", timeout=2)[0] == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("prometheus did not become ready")


def fail_with(e):
    raise e


def live(checks, sluice_bin, tmp, dash_exprs, alerts, with_prometheus, load_seconds):
    """dash_exprs: [(where, expr)]; alerts: [(alert name, expr)]."""
    servers, prom, prom_url = [], None, None
    all_exprs = dash_exprs + [(f"alert {a}", e) for a, e in alerts]
    try:
        primary = checks.run("live: start a primary (self-monitoring every 1 s, tokens, small admission limits)",
                             lambda: Server(sluice_bin, tmp, "primary", extra_env=node_env("primary")))
        if not primary:
            return
        servers.append(primary)
        replica = checks.run("live: start a replica (self-monitoring every 1 s)",
                             lambda: Server(sluice_bin, tmp, "replica", "replica", extra_env=node_env("replica")))
        if not replica:
            return
        servers.append(replica)
        mon = [s.url + "/v1/databases/_monitoring" for s in servers]

        def setup():
            s, b = http("POST", primary.url + "/api/v1/replication/replicas",
                        {"replica_id": "replica-1", "endpoint": replica.url}, token=ADMIN_TOKEN)
            check(s in (200, 201), f"registering the replica: {s} {b}")
            for db in ["other", "monitoring"]:
                s, b = http("POST", primary.url + "/v1/databases", {"name": db}, token=ADMIN_TOKEN)
                check(s in (200, 201), f"creating database {db}: {s} {b}")
            s, b = http("POST", primary.url + "/v1/databases", {"name": "_monitoring"}, token=ADMIN_TOKEN)
            check(s >= 400, f"creating the reserved database _monitoring answered {s} {b}")
            # A batch from a superseded primary: refused (replication_refused_batches_total).
            s, b = http("POST", primary.url + "/api/v1/wal/apply", {
                "primary_id": "old-primary", "compression": "none", "entries_compressed": "",
                "database": "default", "epoch": 0, "first_lsn": 1, "last_lsn": 1, "entries": 0,
                "uncompressed_bytes": 0, "entries_crc32c": 0}, token=ADMIN_TOKEN)
            check(s == 409, f"a stale primary's batch answered {s} {b}")
            st = write_traffic(primary.url, 0, replica.url)
            wrong = {k: v for k, v in st.items() if TRAFFIC_EXPECT.get(k, v) != v}
            check(not wrong, "unexpected statuses: " + ", ".join(
                f"{k} {v} (want {TRAFFIC_EXPECT[k]})" for k, v in wrong.items()))
            deadline = time.time() + 15
            while time.time() < deadline:
                _, text = http("GET", primary.url + "/metrics")
                if re.search(r"^wal_shipper_batches_total [1-9]", text, re.M):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("the primary shipped nothing to the replica")
            return "writer and reader tokens, _monitoring reserved and read-only to writers"
        if checks.run("live: register the replica, create databases, first round of traffic", setup) is None:
            return

        if with_prometheus:
            targets = [s.url.removeprefix("http://") for s in servers]
            try:
                prom, prom_url = start_prometheus(tmp, targets, primary.url + "/v1/databases/monitoring/api/v1/write")
                if not prom:
                    checks.run("live: Prometheus scraping Sluice", fail_with,
                               SkipCheck("prometheus not found (apt-get install prometheus)"))
            except AssertionError as e:
                checks.run("live: start prometheus", fail_with, e)

        def load():
            before = metric_value(http("GET", primary.url + "/metrics")[1], "monitoring_self_scrapes_total")
            end = time.time() + load_seconds
            r, episode = 1, None
            while time.time() < end:
                write_traffic(primary.url, r, replica.url)
                if r == 2:
                    episode = admission_episode(primary.url)
                r += 1
                time.sleep(0.2)
            # A few more self-scrapes (and Prometheus scrapes and remote writes) after the load.
            deadline = time.time() + 10
            while True:
                after = [metric_value(http("GET", s.url + "/metrics")[1], "monitoring_self_scrapes_total")
                         for s in servers]
                if after[0] >= before + load_seconds * 1000 / SELF_SCRAPE_MS - 2 and time.time() > end + 3:
                    break
                check(time.time() < deadline, f"self-scrapes did not keep up: {before} before, {after} after")
                time.sleep(0.5)
            return (f"{r} rounds in {load_seconds:.0f} s; admission: 429 after {len(episode['per actor'])} "
                    f"tries, 503 after {len(episode['shed ts'])}; self-scrapes {after}")
        if checks.run("live: mixed load (writes, reads, 4xx, flushes, 429 and 503 from admission control)",
                      load) is None:
            return

        def self_monitoring():
            out = []
            for s, base in zip(servers, mon):
                text = http("GET", s.url + "/metrics")[1]
                check(metric_value(text, "monitoring_self_scrape_failures_total") == 0,
                      f"{s.url}: self-scrape failures")
                # Each node's `_monitoring` holds its own samples (not shipped by default).
                start = metric_value(text, "process_start_time_seconds")
                st, err, n = query(base, f"process_start_time_seconds == {start}", token=READER_TOKEN)
                check(st == "success" and n == 1, f"{base}: its own process_start_time_seconds {start}: {err or n}")
                st, err, n = query(base, "count_over_time(monitoring_self_scrapes_total[1m]) >= 5",
                                   token=READER_TOKEN)
                check(st == "success" and n == 1, f"{base}: fewer than 5 self-scrapes in the last minute: {err or n}")
                out.append(f"{metric_value(text, 'monitoring_self_scrape_samples'):.0f} samples/scrape")
            return "each node its own: " + ", ".join(out)
        checks.run("live: each node writes its own metrics into its _monitoring (reader token)", self_monitoring)

        def metric_refs():
            samples, declared = {}, set()
            for s in servers:
                sm, dec = parse_metrics(http("GET", s.url + "/metrics")[1])
                for k, v in sm.items():
                    samples.setdefault(k, set()).update(v)
                declared |= dec
            missing = {}
            for where, expr in all_exprs:
                for name in metric_names(expr) - EXTERNAL_METRICS:
                    if name not in declared:
                        missing.setdefault(name, where)
            check(not missing, "not exported by Sluice: " + ", ".join(f"{k} ({v})" for k, v in missing.items()))
            # Label names in matchers must exist on the series (scrape labels job/instance aside).
            bad = set()
            for where, expr in all_exprs:
                for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr):
                    name = m.group(1)
                    if name not in samples:
                        continue
                    for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)):
                        if label not in samples[name] | {"job", "instance", "__name__"}:
                            bad.add(f"{name}{{{label}}} ({where})")
            check(not bad, "labels the series do not have: " + ", ".join(sorted(bad)))
            return f"{len(declared)} exported series names, {len(all_exprs)} expressions"
        checks.run("live: every metric and label named by dashboards and alerts is exported", metric_refs)

        def dashboards_on_self_monitoring():
            failures, empty, replica_only, range_only = [], [], [], []
            for where, expr in dash_exprs:
                found, err = has_data(mon, substitute(expr), token=READER_TOKEN)
                if err:
                    failures.append(f"{where}: {err}")
                elif not found:
                    empty.append(where)
                else:
                    if found[0] == 1:
                        replica_only.append(where)
                    if found[1] == "range":
                        range_only.append(where)
            problems = []
            if failures:
                problems.append(f"{len(failures)} refused: " + "; ".join(failures[:5])
                                + (f" (+{len(failures) - 5})" if len(failures) > 5 else ""))
            if empty:
                problems.append(f"{len(empty)} without data: " + "; ".join(empty))
            check(not problems, " | ".join(problems))
            if replica_only:
                checks.say("data only in the replica's _monitoring: " + "; ".join(replica_only))
            if range_only:
                checks.say(f"data only over the last {RANGE_SECONDS} s (query_range): " + "; ".join(range_only))
            return (f"{len(dash_exprs)} expressions, all with data ({len(range_only)} over a range only, "
                    f"{len(replica_only)} on the replica only)")
        checks.run("live: every dashboard expression has data in _monitoring (primary; replica)",
                   dashboards_on_self_monitoring)

        def alerts_on_self_monitoring():
            failures, empty, substituted = [], [], []
            for name, expr in alerts:
                e = substitute(expr)
                for base in mon:
                    st, err, _ = query(base, e, token=READER_TOKEN)
                    if st != "success":
                        failures.append(f"{name} ({base}): {err}")
                kind = ALERT_EXCEPTIONS.get(name, ("strip", ""))[0]
                if kind == "prometheus":
                    continue
                bare = alert_substitute(name, e) if kind == "substitute" else strip_threshold(e)
                if kind == "substitute":
                    substituted.append(name)
                found, err = has_data(mon, bare, token=READER_TOKEN)
                if err:
                    failures.append(f"{name}: `{bare}`: {err}")
                elif not found:
                    empty.append(f"{name}: `{' '.join(bare.split())}`")
            for name, (kind, why) in ALERT_EXCEPTIONS.items():
                checks.say(f"exception {name}: {why}")
            problems = []
            if failures:
                problems.append(f"{len(failures)} refused: " + "; ".join(failures[:5]))
            if empty:
                problems.append("without data once the threshold is removed: " + "; ".join(empty))
            check(not problems, " | ".join(problems))
            n_prom = sum(1 for v in ALERT_EXCEPTIONS.values() if v[0] == "prometheus")
            return (f"{len(alerts)} rules parse; {len(alerts) - n_prom} have data without their threshold "
                    f"({len(substituted)} through a substitute), {n_prom} checked on Prometheus")
        checks.run("live: every alert rule parses on _monitoring and has data without its threshold",
                   alerts_on_self_monitoring)

        if not prom:
            return

        def compare():
            at = time.time() - 2
            sluice_db = primary.url + "/v1/databases/monitoring"
            failures, empty_prom, empty_sluice, seed_gaps = [], [], [], []
            for where, expr in all_exprs:
                e = substitute(expr)
                sp, errp, np_ = query(prom_url, e, at)
                ss, errs, ns = query(sluice_db, e, at, token=READER_TOKEN)
                if sp != "success":
                    failures.append(f"prometheus {where}: {errp}")
                if ss != "success":
                    failures.append(f"sluice {where}: {errs}")
                if where.startswith("alert "):
                    continue
                if np_ == 0:
                    empty_prom.append(where)
                if ns == 0:
                    empty_sluice.append(where)
                if any(re.search(rf"\b{m}\b", expr) for m in SEED_METRICS) and (np_ == 0 or ns == 0):
                    seed_gaps.append(f"{where} (prometheus {np_}, sluice {ns})")
            # Alerts: without their threshold (or as excepted), with data on Prometheus.
            empty_alerts = []
            for name, expr in alerts:
                e = substitute(expr)
                kind = ALERT_EXCEPTIONS.get(name, ("strip", ""))[0]
                bare = strip_threshold(e) if kind == "strip" else alert_substitute(name, e)
                found, err = has_data([prom_url], bare)
                if err:
                    failures.append(f"prometheus alert {name}: `{bare}`: {err}")
                elif not found:
                    empty_alerts.append(name)
            if empty_sluice:
                checks.say("dashboard expressions empty on the remote-written Sluice database: " + "; ".join(empty_sluice))
            check(not failures, "; ".join(failures[:5]))
            check(not empty_prom, "dashboard expressions without data on Prometheus: " + "; ".join(empty_prom))
            check(not empty_alerts, "alert rules without data on Prometheus once the threshold is removed: "
                  + "; ".join(empty_alerts))
            check(not seed_gaps, "seed metric panels without data: " + "; ".join(seed_gaps))
            return (f"{len(all_exprs)} expressions parse on both; {len(dash_exprs)} dashboard expressions with "
                    f"data on Prometheus, {len(dash_exprs) - len(empty_sluice)} on Sluice (remote-written); "
                    f"{len(alerts)} alert rules with data on Prometheus")
        checks.run("live: Prometheus scrapes both and remote-writes into Sluice; every expression on both", compare)
    finally:
        if prom:
            prom.send_signal(signal.SIGTERM)
            try:
                prom.wait(timeout=15)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        for s in reversed(servers):
            s.stop()


# ---------------------------------------------------------------------------------------------

def main():
    # A timeout's SIGTERM unwinds like an exception, so the servers started here are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sluice-bin", default=os.environ.get("SLUICE_BIN", str(ROOT / "target/debug/sluice")))
    ap.add_argument("--no-live", action="store_true", help="skip the checks that start servers")
    ap.add_argument("--no-prometheus", action="store_true", help="skip the Prometheus part of the live checks")
    ap.add_argument("--load-seconds", type=float, default=10, help="duration of the mixed load")
    ap.add_argument("--strict", action="store_true", help="a skipped check fails (CI)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    checks = Checks(args.verbose)
    sluice_bin = args.sluice_bin if os.access(args.sluice_bin, os.X_OK) else None

    dashboards = checks.run("dashboards: JSON parses", load_dashboards)
    checks.run("dashboards: up to date with deploy/grafana/generate_dashboards.py", check_generator)
    if dashboards:
        for name, d in dashboards.items():
            checks.run(f"dashboards: {name}", check_dashboard, name, d)
        checks.run("dashboards: uids unique", check_dashboards_unique, dashboards)
        checks.run("dashboards: every seed metric on a panel", check_seed_metrics, dashboards)
    checks.run("grafana: provisioning files", check_provisioning)
    alerts = checks.run("alerts: YAML parses", load_alerts)
    if alerts:
        checks.run("alerts: rules complete", check_alerts_structure, alerts)
    checks.run("alerts: promtool check rules, check config of prometheus.yml", check_promtool)
    checks.run("compose: services, files and mounts", check_compose)
    checks.run("docker: Dockerfile and .dockerignore", check_dockerfile)

    def settings_accepted():
        if not sluice_bin:
            raise SkipCheck(f"no sluice binary at {args.sluice_bin}")
        compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        for name in ["primary", "replica"]:
            env = dict(dockerfile_env())
            for k, v in compose["services"][name]["environment"].items():
                env[k] = re.sub(r"\$\{SLUICE_TOKEN[^}]*\}", "0123456789abcdef0123456789abcdef", str(v))
            base = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
            r = subprocess.run([sluice_bin, "config", "print"], capture_output=True, text=True,
                               env=dict(base, **env))
            check(r.returncode == 0, f"compose {name}: {r.stderr.strip()}")
        return "Dockerfile ENV + compose environment"
    checks.run("config: sluice config print accepts the image's and compose's SLUICE_* settings",
               settings_accepted)

    dash_exprs = [(f"{n}/{t}", e) for n, t, e in dashboard_exprs(dashboards)] if dashboards else []
    rules = alert_exprs(alerts) if alerts else []

    with tempfile.TemporaryDirectory(prefix="sluice-deploy-") as tmp:
        checks.run("helm: Chart.yaml and values.yaml", check_chart_meta)
        kind, render = None, None
        try:
            kind, render = helm_renderer(tmp)
        except AssertionError as e:
            checks.run("helm: renderer", lambda: (_ for _ in ()).throw(e))
        valid = sorted((HERE / "helm-values").glob("*.yaml"))
        invalid = sorted((HERE / "helm-values-invalid").glob("*.yaml"))
        if kind == "helm":
            checks.run("helm: helm lint", helm_lint, valid)
        if render is None:
            checks.run("helm: render the chart", lambda: (_ for _ in ()).throw(SkipCheck(
                "neither helm nor go with golang-github-masterminds-sprig-dev is installed")))
        else:
            for v in valid:
                def one(v=v):
                    rc, out, err = render(v)
                    check(rc == 0, err.strip()[-800:])
                    docs = [d for d in yaml.safe_load_all(out) if d]
                    return check_rendered(v, docs, sluice_bin)
                checks.run(f"helm ({kind}): {v.name} renders, validates", one)
            for v in invalid:
                checks.run(f"helm ({kind}): {v.name} is refused", check_invalid_values, render, v)

        if args.no_live:
            pass
        elif not sluice_bin:
            checks.run("live", lambda: (_ for _ in ()).throw(SkipCheck(f"no sluice binary at {args.sluice_bin}")))
        else:
            live(checks, sluice_bin, tmp, dash_exprs, rules, not args.no_prometheus, args.load_seconds)

    if args.strict and checks.skipped:
        checks.failed += checks.skipped
        print(f"{checks.skipped} skipped check(s) count as failures (--strict)")
    skipped = f", {checks.skipped} skipped" if checks.skipped and not args.strict else ""
    print(f"deploy: {checks.passed} passed, {checks.failed} failed{skipped}")
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
