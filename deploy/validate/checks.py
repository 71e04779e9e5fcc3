"""Checks of the deployment files that no off-the-shelf validator covers, and the glue around
the ones that do. deploy/validate.sh calls each subcommand and prints the summary.

    python checks.py compose  ROOT            # compose-spec semantics, .env.example, nginx upstreams
    python checks.py helm     ROOT OUT        # lint, render defaults + ci/*-values.yaml, refusals
    python checks.py monitor  MANIFESTS...    # ServiceMonitor against the Prometheus Operator models
    python checks.py kong     FILE            # KongPlugin against the KIC CRD's rules

Each prints one line per finding and exits non-zero when something is wrong.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


# --- Compose -----------------------------------------------------------------------------------

VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, env: dict[str, str], used: set[str]):
    """Compose's variable interpolation (`${V}`, `${V:-default}`, `${V:?error}`, `$$`)."""
    if isinstance(value, str):
        def one(m: re.Match) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1) or m.group(4)
            used.add(name)
            op, arg = m.group(2), m.group(3)
            v = env.get(name, "")
            if op in (":-", "-"):
                return v or arg
            if op in (":?", "?") and not v:
                raise KeyError(f"{name}: {arg}")
            return v
        return VAR.sub(one, value)
    if isinstance(value, list):
        return [interpolate(v, env, used) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env, used) for k, v in value.items()}
    return value


def check_compose(root: Path) -> None:
    from compose_spec import PyCompose

    deploy = root / "deploy"
    raw = yaml.safe_load((deploy / "compose.yaml").read_text())  # resolves anchors and `<<`
    raw = {k: v for k, v in raw.items() if not k.startswith("x-")}

    # Every variable the file requires is listed in .env.example, so a copy of it is complete.
    listed = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (deploy / ".env.example").read_text(), re.M))
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", (deploy / "compose.yaml").read_text()))
    missing = sorted(required - listed)
    if missing:
        fail(f"compose.yaml requires {missing}, which .env.example does not list")
    else:
        ok(f"every required variable is in .env.example ({', '.join(sorted(required))})")

    env = {name: f"placeholder-{name.lower()}" for name in listed}
    env.pop("PALISADE_PORT", None)  # exercise the default
    used: set[str] = set()
    try:
        spec = interpolate(raw, env, used)
    except KeyError as e:
        fail(f"interpolation with .env.example's variables set: {e}")
        return
    try:
        parsed = PyCompose.from_json(json.dumps(spec))
        ok(f"compose_spec parses the interpolated file: services {parsed.service_names()}")
    except ValueError as e:
        fail(f"compose_spec: {e}")
        return
    # Without the required variables, Compose must refuse to start rather than run keyless.
    try:
        interpolate(raw, {}, set())
        fail("compose.yaml interpolates without any secret set")
    except KeyError:
        ok("compose.yaml refuses to interpolate without its secrets")

    services = spec["services"]
    replicas = [n for n in services if n.startswith("palisade-")]
    if len(replicas) != 2:
        fail(f"expected two Palisade replicas, found {replicas}")
    images = {services[n].get("image") for n in replicas}
    mounts = {n: services[n].get("volumes", []) for n in replicas}
    configs = {tuple(v for v in m if v.endswith("/etc/palisade/palisade.yaml:ro")) for m in mounts.values()}
    data = [tuple(v.split(":")[0] for v in m if ":/var/lib/palisade" in v) for m in mounts.values()]
    if len(images) == 1 and len(configs) == 1 and next(iter(configs)):
        ok(f"replicas {replicas} share image {images.pop()} and config mount {next(iter(configs))[0]}")
    else:
        fail(f"replicas differ: images {images}, config mounts {configs}")
    named = raw.get("volumes", {}) or {}
    if all(len(d) == 1 and d[0] in named for d in data) and len({d[0] for d in data}) == len(data):
        ok(f"each replica records to its own named volume: {[d[0] for d in data]}")
    else:
        fail(f"each replica needs its own named volume at /var/lib/palisade, got {data}")
    for name, svc in services.items():
        if "healthcheck" not in svc:
            fail(f"service {name} has no healthcheck")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy" and "healthcheck" not in services.get(dep, {}):
                fail(f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("./") and not (deploy / src).exists():
                fail(f"{name} mounts {src}, which does not exist")
    ok("every service has a healthcheck; service_healthy conditions point at services with one")

    conf = (deploy / "nginx" / "palisade.conf").read_text()
    upstreams = set(re.findall(r"^\s*server\s+([\w.-]+):8080", conf, re.M))
    if upstreams == set(replicas):
        ok(f"nginx balances over exactly the compose replicas {sorted(upstreams)}")
    else:
        fail(f"nginx upstreams {sorted(upstreams)} differ from compose replicas {sorted(replicas)}")


# --- Helm --------------------------------------------------------------------------------------

def check_helm(root: Path, out: Path) -> None:
    import helm_python as helm

    chart = root / "deploy" / "helm" / "palisade"
    out.mkdir(parents=True, exist_ok=True)
    print(f"  (Helm SDK {helm.helm_sdk_version()} through helm-python-sdk, libhelm_c {helm.helm_c_version()})")

    value_sets: dict[str, dict | None] = {"default": None}
    for f in sorted((chart / "ci").glob("*-values.yaml")):
        value_sets[f.stem] = yaml.safe_load(f.read_text())

    for name, values in value_sets.items():
        report = helm.lint(str(chart), values, strict=True)
        errors = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
        # severity 1 is INFO ("icon is recommended"); 2 is WARNING, 3 ERROR.
        if errors:
            fail(f"helm lint --strict ({name}): {errors}")
        else:
            infos = [m["error"] for m in report.get("messages", [])]
            ok(f"helm lint --strict ({name} values)" + (f"; info: {infos}" if infos else ""))

    with helm.Chart.load(str(chart)) as ch:
        for name, values in value_sets.items():
            manifests = ch.render(values, name="palisade", namespace="palisade")
            docs = [text for path, text in sorted(manifests.items()) if path.endswith(".yaml") and text.strip()]
            (out / f"{name}.yaml").write_text("\n---\n".join(docs))
            n = 0
            for doc in yaml.safe_load_all((out / f"{name}.yaml").read_text()):
                if not doc:
                    continue
                n += 1
                if doc["kind"] == "ConfigMap":
                    (out / f"{name}.palisade.yaml").write_text(doc["data"]["palisade.yaml"])
            ok(f"rendered {name} values: {n} manifests -> {out / (name + '.yaml')}")

        # The chart must refuse what would deploy a broken or keyless Palisade.
        refusals = {
            "a collector whose key no Secret provides": {
                "config": {"collectors": [{"name": "kong", "api_key_env": "PALISADE_KONG_KEY"}]}},
            "redis enabled without its Secret": {"redis": {"enabled": True}},
            "postgresql enabled without its Secret": {"postgresql": {"enabled": True}},
        }
        for what, values in refusals.items():
            try:
                ch.render(values, name="palisade", namespace="palisade")
                fail(f"the chart rendered {what}")
            except helm.HelmError as e:
                ok(f"refuses {what}: {str(e).splitlines()[-1][:120]}")


# --- ServiceMonitor ----------------------------------------------------------------------------

def unknown_keys(given, known, path: str = "") -> list[str]:
    """Keys present in `given` that the model dropped (the models ignore unknown fields)."""
    out: list[str] = []
    if isinstance(given, dict) and isinstance(known, dict):
        for k, v in given.items():
            if k not in known:
                out.append(f"{path}.{k}")
            else:
                out += unknown_keys(v, known[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(known, list):
        for i, (g, k) in enumerate(zip(given, known)):
            out += unknown_keys(g, k, f"{path}[{i}]")
    return out


def check_monitor(files: list[Path]) -> None:
    from cloudcoil.models.prometheus_operator import v1

    seen = 0
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "ServiceMonitor":
                continue
            seen += 1
            try:
                model = v1.ServiceMonitor.model_validate(doc)
            except Exception as e:  # pydantic's ValidationError
                fail(f"{f.name}: ServiceMonitor: {e}")
                continue
            dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
            extra = unknown_keys(doc, dumped)
            if extra:
                fail(f"{f.name}: ServiceMonitor has fields the CRD does not know: {extra}")
            else:
                ok(f"{f.name}: ServiceMonitor matches the prometheus-operator v1 model (no unknown fields)")
    if not seen:
        print("  --   no ServiceMonitor in these manifests")


# --- KongPlugin --------------------------------------------------------------------------------

# From the KongPlugin CRD (configuration.konghq.com/v1): its fields and its validation rules.
KONGPLUGIN_FIELDS = {"apiVersion", "kind", "metadata", "consumerRef", "disabled", "config", "configFrom",
                     "configPatches", "plugin", "run_on", "protocols", "ordering", "instance_name", "status"}
KONG_PROTOCOLS = {"http", "https", "grpc", "grpcs", "tcp", "tls", "udp", "ws", "wss"}
# The palisade plugin's configuration (issue 5: the Kong plugin's schema).
PALISADE_PLUGIN_FIELDS = {
    "service_url": str, "mode": str, "timeout_ms": int, "api_key": str, "fail_open": bool,
    "inspect_request": bool, "inspect_response": bool, "max_body_bytes": int,
}


def check_kong(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    plugins = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "KongPlugin"}
    if not plugins:
        fail(f"{path.name}: no KongPlugin")
    for name, p in plugins.items():
        where = f"KongPlugin/{name}"
        before = len(failures)
        if p.get("apiVersion") != "configuration.konghq.com/v1":
            fail(f"{where}: apiVersion {p.get('apiVersion')}")
        extra = set(p) - KONGPLUGIN_FIELDS
        if extra:
            fail(f"{where}: fields the CRD does not have: {sorted(extra)} (KongPlugin has no `spec`)")
        if not p.get("plugin"):
            fail(f"{where}: `plugin` is required")
        if "config" in p and "configFrom" in p:
            fail(f"{where}: the CRD refuses config and configFrom together")
        if "configFrom" in p and "configPatches" in p:
            fail(f"{where}: the CRD refuses configFrom and configPatches together")
        if p.get("run_on") not in (None, "first", "second", "all"):
            fail(f"{where}: run_on {p['run_on']}")
        if set(p.get("protocols", [])) - KONG_PROTOCOLS:
            fail(f"{where}: protocols {p['protocols']}")
        for i, patch in enumerate(p.get("configPatches", [])):
            ref = (patch.get("valueFrom") or {}).get("secretKeyRef") or {}
            if not str(patch.get("path", "")).startswith("/") or set(patch) != {"path", "valueFrom"}:
                fail(f"{where}: configPatches[{i}] needs exactly `path` (a JSON Pointer) and `valueFrom`")
            if set(ref) != {"name", "key"}:
                fail(f"{where}: configPatches[{i}].valueFrom.secretKeyRef needs `name` and `key`, got {sorted(ref)}")
        if "configFrom" in p and set((p["configFrom"].get("secretKeyRef") or {})) != {"name", "key"}:
            fail(f"{where}: configFrom.secretKeyRef needs `name` and `key`")
        if p.get("plugin") == "palisade":
            config = p.get("config") or {}
            for k, v in config.items():
                want = PALISADE_PLUGIN_FIELDS.get(k)
                if want is None:
                    fail(f"{where}: config.{k} is not a field of the palisade plugin")
                elif not isinstance(v, want) or (want is int and isinstance(v, bool)):
                    fail(f"{where}: config.{k} should be {want.__name__}, is {v!r}")
            if config.get("mode") not in ("async", "blocking"):
                fail(f"{where}: config.mode must be async or blocking")
            if not re.match(r"^https?://", str(config.get("service_url", ""))):
                fail(f"{where}: config.service_url must be an http(s) URL")
            for k in ("timeout_ms", "max_body_bytes"):
                if isinstance(config.get(k), int) and config[k] <= 0:
                    fail(f"{where}: config.{k} must be positive")
            if "api_key" in config:
                fail(f"{where}: the API key is written into the manifest; take it from a Secret")
            patched = {patch.get("path") for patch in p.get("configPatches", [])}
            if "/api_key" not in patched and "configFrom" not in p:
                fail(f"{where}: no Secret supplies api_key (configPatches path /api_key or configFrom)")
        if len(failures) == before:
            ok(f"{where}: CRD rules (fields, config/configFrom/configPatches exclusivity, secretKeyRef shape)"
               + (" and the palisade plugin's config fields and types" if p.get("plugin") == "palisade" else ""))

    for d in docs:
        if d.get("kind") != "Ingress":
            continue
        names = [n.strip() for n in d["metadata"].get("annotations", {}).get("konghq.com/plugins", "").split(",") if n.strip()]
        unknown = [n for n in names if n not in plugins]
        if not names:
            fail(f"Ingress/{d['metadata']['name']}: no konghq.com/plugins annotation")
        elif unknown:
            fail(f"Ingress/{d['metadata']['name']}: konghq.com/plugins names {unknown}, not in this file")
        else:
            ok(f"Ingress/{d['metadata']['name']}: konghq.com/plugins names {names}, defined above")
        if d["spec"].get("ingressClassName") != "kong":
            fail(f"Ingress/{d['metadata']['name']}: ingressClassName is not kong")


def main() -> int:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "compose":
        check_compose(Path(args[0]))
    elif cmd == "helm":
        check_helm(Path(args[0]), Path(args[1]))
    elif cmd == "monitor":
        check_monitor([Path(a) for a in args])
    elif cmd == "kong":
        check_kong(Path(args[0]))
    else:
        print(f"unknown check {cmd}", file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
