"""The admin API over HTTP against the binary: roles, and configuration applied with no restart.

- a missing, malformed or unknown key gets 401; a viewer cannot approve; an approver cannot change
  policy (apply or roll back); an admin can;
- an apply switches new requests at once, keeps rate counters and pending approvals, is audited,
  and can be rolled back; an invalid document is refused with its field and line.
"""

import hashlib
import os
import subprocess
import sys

import httpx
import pytest

from conftest import HERE, ROOT, free_port, wait_port

KEYS = {"viewer": "adm-viewer-key", "approver": "adm-approver-key", "admin": "adm-admin-key"}


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admin")
    ports = {k: free_port() for k in ["llm", "palisade", "admin"]}
    procs = []
    try:
        p = subprocess.Popen([sys.executable, str(HERE / "servers.py"), "llm", str(ports["llm"])],
                             stdout=subprocess.DEVNULL, stderr=open(tmp / "llm.log", "w"))
        procs.append(p)
        wait_port(ports["llm"], p)
        llm = f"http://127.0.0.1:{ports['llm']}/any"
        cfg = tmp / "palisade.yaml"
        cfg.write_text(f"""
listen: 127.0.0.1:{ports['palisade']}
storage: {{ sqlite_path: '{tmp / "records.db"}' }}
admin:
  listen: 127.0.0.1:{ports['admin']}
  keys:
    - {{ name: vera, sha256: {sha(KEYS['viewer'])}, role: viewer }}
    - {{ name: alice, sha256: {sha(KEYS['approver'])}, role: approver }}
    - {{ name: root, sha256: {sha(KEYS['admin'])}, role: admin }}
routes:
  - {{ name: api, path_prefix: /api, upstream: '{llm}', protocol: http, policy: api }}
policies:
  api:
    governance:
      default_agent_id: tester
      hold_actions: ['^delete_']
      approval: {{ mode: async }}
    rate_limits:
      - {{ key: [client_ip], max_requests: 4, period_seconds: 300 }}
""")
        binary = os.environ.get("PALISADE_BIN", str(ROOT / "target" / "release" / "palisade"))
        p = subprocess.Popen([binary, "serve", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                             stderr=open(tmp / "palisade.log", "w"), env={**os.environ, "PALISADE_LOG": "warn"})
        procs.append(p)
        wait_port(ports["palisade"], p)
        wait_port(ports["admin"], p)
        yield {"base": f"http://127.0.0.1:{ports['palisade']}", "admin": f"http://127.0.0.1:{ports['admin']}",
               "proc": p}
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def adm(env, method, path, role="admin", **kw):
    headers = {"authorization": f"Bearer {KEYS[role]}"} if role else {}
    return httpx.request(method, env["admin"] + path, headers=headers, timeout=10, **kw)


def test_missing_malformed_or_unknown_key_gets_401(env):
    for headers in [{}, {"authorization": "Bearer nope"}, {"authorization": KEYS["admin"]},
                    {"authorization": "Basic " + KEYS["admin"]}]:
        for method, path in [("GET", "/admin/config"), ("PUT", "/admin/config"), ("GET", "/admin/stats")]:
            r = httpx.request(method, env["admin"] + path, headers=headers, timeout=10)
            assert r.status_code == 401, (headers, path)
            assert r.json()["error"]["code"] == "unauthenticated"


def test_roles_viewer_cannot_approve_and_approver_cannot_change_policy(env):
    held = httpx.delete(env["base"] + "/api/repos/1", timeout=10)
    assert held.status_code == 202, held.text
    pending = adm(env, "GET", "/admin/approvals?status=pending", role="viewer").json()["approvals"]
    assert pending, "the DELETE is pending"
    aid = pending[0]["id"]
    r = adm(env, "POST", f"/admin/approvals/{aid}/approve", role="viewer", json={"reason": "x"})
    assert r.status_code == 403 and "approver" in r.json()["error"]["message"]
    doc = adm(env, "GET", "/admin/config/document", role="viewer").json()["yaml"]
    for role in ["viewer", "approver"]:
        assert adm(env, "PUT", "/admin/config", role=role, json={"yaml": doc}).status_code == 403
        assert adm(env, "POST", "/admin/config/rollback", role=role, json={}).status_code == 403
    # Validation has no effect, so a viewer may ask for it.
    assert adm(env, "POST", "/admin/config/validate", role="viewer", json={"yaml": doc}).json()["valid"] is True
    r = adm(env, "POST", f"/admin/approvals/{aid}/approve", role="approver", json={"reason": "ok"})
    assert r.status_code == 200 and r.json()["decided_by"] == "alice"


def test_config_is_redacted_and_the_openapi_document_lists_the_api(env):
    c = adm(env, "GET", "/admin/config", role="viewer").json()
    assert all(k["sha256"] == "<redacted>" for k in c["config"]["admin"]["keys"])
    assert KEYS["admin"] not in str(c) and sha(KEYS["admin"]) not in str(c)
    spec = adm(env, "GET", "/admin/openapi.json", role="viewer").json()
    assert spec["openapi"].startswith("3.")
    for path in ["/admin/config", "/admin/config/rollback", "/admin/stats", "/admin/findings",
                 "/admin/approvals/{id}/approve"]:
        assert path in spec["paths"], path


def test_apply_keeps_state_switches_new_requests_and_rolls_back(env):
    v0 = adm(env, "GET", "/admin/config").json()["version"]
    # A pending approval made before the apply.
    assert httpx.delete(env["base"] + "/api/things/7", timeout=10).status_code == 202
    before = [a["id"] for a in adm(env, "GET", "/admin/approvals?status=pending").json()["approvals"]]
    assert before
    # Rate counter (limit 4 per client): the DELETE of the roles test, the one above, this GET.
    assert httpx.get(env["base"] + "/api/ping", timeout=10).status_code == 200
    doc = adm(env, "GET", "/admin/config/document").json()["yaml"]

    # Refused: an unknown action, with its line and field; and a section outside the document.
    bad = doc.replace("hold_actions:\n      - ^delete_", "hold_actions:\n      - ^delete_\n      explode: 1")
    assert bad != doc, doc
    r = adm(env, "PUT", "/admin/config", json={"yaml": bad})
    assert r.status_code == 422
    e = r.json()["errors"][0]
    assert e["line"] == bad.splitlines().index("      explode: 1") + 1, e
    assert "explode" in e["message"] and e["field"].startswith("policies.api.governance"), e
    r = adm(env, "PUT", "/admin/config", json={"yaml": "listen: 127.0.0.1:1\n" + doc})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "listen"
    assert adm(env, "GET", "/admin/config").json()["version"] == v0

    # Applied: GETs of /api/ping now need approval too.
    new = doc.replace("- ^delete_", "- ^delete_\n      - ^read_ping")
    assert new != doc
    r = adm(env, "PUT", "/admin/config", json={"yaml": new, "reason": "hold pings"})
    assert r.status_code == 200, r.text
    v1 = r.json()["version"]
    assert v1 == v0 + 1
    assert httpx.get(env["base"] + "/api/ping", timeout=10).status_code == 202
    # The rate counter kept counting across the apply: 3 before, the held ping makes 4, so the
    # next is refused (a counter rebuilt with the configuration would have let it through).
    assert httpx.get(env["base"] + "/api/other", timeout=10).status_code == 429
    # The approval pending before the apply is still there and can be decided.
    r = adm(env, "POST", f"/admin/approvals/{before[0]}/deny", role="approver", json={"reason": "no"})
    assert r.status_code == 200 and r.json()["status"] == "denied"

    # Rolled back to the previous version, as a new version; audited with who and why.
    r = adm(env, "POST", "/admin/config/rollback", json={"reason": "too strict"})
    assert r.status_code == 200 and r.json()["rollback_of"] == v0 and r.json()["version"] == v1 + 1
    assert "read_ping" not in adm(env, "GET", "/admin/config/document").json()["yaml"]
    hist = adm(env, "GET", "/admin/config/history", role="viewer").json()["versions"]
    assert [h["version"] for h in hist][:3] == [v1 + 1, v1, v0]
    assert hist[1]["by"] == "root" and hist[1]["reason"] == "hold pings"
    audit = adm(env, "GET", "/admin/audit?limit=50", role="viewer").json()["entries"]
    acts = [(a["action"], a["actor"], a.get("reason")) for a in audit]
    assert ("config.apply", "root", "hold pings") in acts
    assert ("config.rollback", "root", "too strict") in acts
    assert env["proc"].poll() is None, "no restart"


def test_stats_and_findings_see_the_traffic(env):
    s = adm(env, "GET", "/admin/stats?window_ms=600000&bucket_ms=60000", role="viewer").json()
    assert s["total"]["requests"] >= 5
    assert s["total"]["latency_p50_ms"] is not None
    assert s["total"]["latency_p95_ms"] >= s["total"]["latency_p50_ms"]
    assert sum(b["requests"] for b in s["buckets"]) == s["total"]["requests"]
    r = adm(env, "GET", "/admin/findings?limit=2&cursor=bogus", role="viewer")
    assert r.status_code == 400
