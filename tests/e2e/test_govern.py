"""Governance end to end: a real palisade binary, real Python MCP SDK servers and clients, real
HTTP, and the admin API.

Covers tool pinning and rug-pull quarantine with approval through the admin API, rate limits,
toxic flows, agent identity, action types, excluded paths, the decision cache, holds (wait and
202), approval expiry, and fail-open against fail-closed when the state store fails.
"""

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
try:  # mcp 2.x
    from mcp.shared.exceptions import MCPError as McpError
except ImportError:  # mcp 1.x
    from mcp.shared.exceptions import McpError

from conftest import HERE, ROOT, free_port, wait_port

KEYS = {"approver": "approver-key-123", "viewer": "viewer-key-456", "admin": "admin-key-789"}


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


class Gov:
    def __init__(self, base, admin, log):
        self.base, self.admin, self.log = base, admin, log

    def adm(self, method, path, role="approver", **kw):
        return httpx.request(method, f"{self.admin}{path}", headers={"authorization": f"Bearer {KEYS[role]}"},
                             timeout=10, **kw)


def start(tmp, config, procs):
    cfg = tmp / "palisade.yaml"
    cfg.write_text(config)
    binary = os.environ.get("PALISADE_BIN", str(ROOT / "target" / "release" / "palisade"))
    log = tmp / "palisade.log"
    p = subprocess.Popen([binary, "serve", "--config", str(cfg), "--log-json"], stdout=subprocess.DEVNULL,
                         stderr=open(log, "w"), env={**os.environ, "PALISADE_LOG": "info"})
    procs.append(p)
    return p, log


@pytest.fixture(scope="module")
def gov(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("govern")
    ports = {k: free_port() for k in ["rug", "mcp", "llm", "palisade", "admin", "changing"]}
    procs = []
    try:
        for kind, key in [("mcp-rugpull", "rug"), ("mcp-http", "mcp"), ("llm", "llm"),
                          ("mcp-listchanged", "changing")]:
            p = subprocess.Popen([sys.executable, str(HERE / "servers.py"), kind, str(ports[key])],
                                 stdout=subprocess.DEVNULL, stderr=open(tmp / f"{key}.log", "w"))
            procs.append(p)
            wait_port(ports[key], p)
        llm = f"http://127.0.0.1:{ports['llm']}/any"
        config = f"""
listen: 127.0.0.1:{ports['palisade']}
storage: {{ sqlite_path: '{tmp / "records.db"}' }}
client_ip: {{ trusted_proxies: ['127.0.0.1'] }}
admin:
  listen: 127.0.0.1:{ports['admin']}
  keys:
    - {{ name: alice, sha256: {sha(KEYS['approver'])}, role: approver }}
    - {{ name: victor, sha256: {sha(KEYS['viewer'])}, role: viewer }}
    - {{ name: root, sha256: {sha(KEYS['admin'])}, role: admin }}
routes:
  - {{ name: rug, path_prefix: /rug, upstream: 'http://127.0.0.1:{ports['rug']}/mcp', protocol: mcp, policy: pinned }}
  - {{ name: limited, path_prefix: /limited, upstream: 'http://127.0.0.1:{ports['mcp']}/mcp', protocol: mcp }}
  - {{ name: flows, path_prefix: /flows, upstream: 'http://127.0.0.1:{ports['mcp']}/mcp', protocol: mcp, policy: flows }}
  - {{ name: gov, path_prefix: /gov, upstream: '{llm}', protocol: http, policy: gov }}
  - {{ name: async, path_prefix: /async, upstream: '{llm}', protocol: http, policy: async }}
  - {{ name: changing, path_prefix: /changing, upstream: 'http://127.0.0.1:{ports['changing']}/mcp', protocol: mcp, policy: pinned }}
  - {{ name: authz, path_prefix: /authz, upstream: 'http://127.0.0.1:{ports['mcp']}/mcp', protocol: mcp, policy: authz }}
  - {{ name: authz-http, path_prefix: /authz-http, upstream: '{llm}', protocol: http, policy: authz }}
  - {{ name: watched, path_prefix: /watched, upstream: 'http://127.0.0.1:{ports['mcp']}/mcp', protocol: mcp, policy: authz, mode: monitor }}
  - {{ name: rug-batch, path_prefix: /rug-batch, upstream: 'http://127.0.0.1:{ports['llm']}/batch-mcp', protocol: mcp, policy: pinned }}
policies:
  pinned:
    tools: {{ pin: true, on_change: quarantine }}
  flows:
    tools:
      labels: {{ lookup_customer: [private_data], echo: [egress] }}
    flows:
      - {{ after: private_data, then: egress, action: deny }}
  gov:
    governance:
      require_agent_id: true
      agent_id_header: x-agent
      excluded_paths: ['^/health']
      actions:
        - {{ pattern: '^POST /payments', action: send_payment, risk: 90 }}
      hold_actions: ['^delete_']
      deny_actions: ['^update_secrets$']
      hold_risk_score: 85
      approval: {{ mode: wait, wait_ms: 4000 }}
      decision_cache: {{ ttl_seconds: 1 }}
      status: {{ deny: 451 }}
  async:
    governance:
      default_agent_id: anonymous-agent
      hold_actions: ['^delete_']
      approval: {{ mode: async, pending_ttl_seconds: 2 }}
  authz:
    governance:
      approval: {{ mode: async }}
      authorization:
        unverified_jwt_claims: true
        rules:
          - name: ops-bot-may-do-anything
            when: agent == 'ops-bot'
            effect: allow
          - name: lookups-from-the-office-only
            when: mcp.tool == 'lookup_customer' && !inCidr(source.ip, '10.0.0.0/8')
            effect: deny
            message: customer lookups only from the office network
          - name: no-secrets-in-echo
            when: mcp.tool == 'echo' && mcp.arguments.text.contains('secret')
            effect: deny
          - name: read-page-needs-admins
            when: >-
              mcp.tool == 'read_page'
              && !(has(jwt.groups) && 'admins' in jwt.groups)
            effect: deny
          - name: deletes-need-an-admin-role
            when: request.method == 'DELETE' && request.headers['x-role'] != 'admin'
            effect: hold
          - name: writes-only-for-acme
            when: request.method == 'PUT' && tenant != 'acme'
            effect: deny
"""
        p, log = start(tmp, config, procs)
        wait_port(ports["palisade"], p)
        wait_port(ports["admin"], p)
        yield Gov(f"http://127.0.0.1:{ports['palisade']}", f"http://127.0.0.1:{ports['admin']}", log)
        assert p.poll() is None, "palisade died during the tests"
        assert "panicked" not in Path(log).read_text()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def mcp_session(url, body, headers=None):
    async def main():
        async with streamable_http_client(url) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                return await body(session)
    return anyio.run(main)


def test_rug_pull_quarantine_and_approval(gov):
    async def body(s):
        first = {t.name for t in (await s.list_tools()).tools}
        assert {"weather", "echo"} <= first
        # The server changes `weather`'s description: the second list hides it.
        second = {t.name for t in (await s.list_tools()).tools}
        assert "weather" not in second and "echo" in second
        with pytest.raises(McpError) as err:
            await s.call_tool("weather", {"city": "Oslo"})
        assert "quarantine" in str(err.value)
        assert (await s.call_tool("echo", {"text": "still fine"})).content[0].text == "still fine"

        pins = gov.adm("GET", "/admin/tools?route=rug", role="viewer").json()["tools"]
        weather = next(p for p in pins if p["tool"] == "weather")
        assert weather["state"] == "quarantined"
        assert "description" in weather["note"]
        # A viewer may not approve; an approver may.
        assert gov.adm("POST", "/admin/tools/approve", role="viewer",
                       json={"route": "rug", "tool": "weather"}).status_code == 403
        assert httpx.post(f"{gov.admin}/admin/tools/approve", json={"route": "rug", "tool": "weather"}).status_code == 401
        r = gov.adm("POST", "/admin/tools/approve", json={"route": "rug", "tool": "weather", "reason": "reviewed"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "pinned"

        third = {t.name for t in (await s.list_tools()).tools}
        assert "weather" in third
        ok = await s.call_tool("weather", {"city": "Oslo"})
        assert ok.content[0].text == "Sunny in Oslo"

        # A manual quarantine needs the admin role, and release brings the tool back.
        assert gov.adm("POST", "/admin/tools/quarantine", json={"route": "rug", "tool": "echo"}).status_code == 403
        assert gov.adm("POST", "/admin/tools/quarantine", role="admin",
                       json={"route": "rug", "tool": "echo", "reason": "incident"}).status_code == 200
        assert "echo" not in {t.name for t in (await s.list_tools()).tools}
        assert gov.adm("POST", "/admin/tools/release", role="admin", json={"route": "rug", "tool": "echo"}).status_code == 200
        assert "echo" in {t.name for t in (await s.list_tools()).tools}

    mcp_session(f"{gov.base}/rug", body)
    audit = gov.adm("GET", "/admin/audit?limit=50", role="viewer").json()["entries"]
    seen = [(e["actor"], e["action"], e["target"].split(" ")[-1]) for e in audit]
    assert ("palisade", "tool.quarantined", "weather") in seen
    assert ("alice", "tool.approved", "weather") in seen
    assert ("root", "tool.quarantined", "echo") in seen
    assert ("root", "tool.released", "echo") in seen


def test_rate_limit_per_ip_per_tool(gov):
    async def body(s):
        for i in range(100):
            r = await s.call_tool("echo", {"text": f"n{i}"})
            assert r.content[0].text == f"n{i}"
        with pytest.raises(McpError) as err:
            await s.call_tool("echo", {"text": "one too many"})
        assert err.value.error.code == -32029
        # GCRA: 300 s / 100 = 3 s between calls once the burst is spent, less the time the 100
        # calls took (a second or two on a loaded machine), rounded up.
        assert 1 <= err.value.error.data["retry_after_seconds"] <= 3
        # Another tool has its own counter.
        assert "Customer 7" in (await s.call_tool("lookup_customer", {"customer_id": "7"})).content[0].text

    mcp_session(f"{gov.base}/limited", body)
    # The refusal is Palisade's own: the HTTP answer carries Retry-After (at most 3 s, as above).
    r = httpx.post(f"{gov.base}/limited", json={"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                                "params": {"name": "echo", "arguments": {"text": "x"}}},
                   headers={"accept": "application/json"})
    assert r.headers["retry-after"] in ("1", "2", "3")
    assert r.json()["error"]["code"] == -32029
    assert r.headers["x-palisade-decision"] == "deny"


def test_toxic_flow_private_read_then_egress(gov):
    async def body(s):
        # Egress before any private read is fine.
        assert (await s.call_tool("echo", {"text": "hello"})).content[0].text == "hello"
        await s.call_tool("lookup_customer", {"customer_id": "42"})
        with pytest.raises(McpError) as err:
            await s.call_tool("echo", {"text": "exfil"})
        msg = str(err.value)
        assert "toxic flow" in msg
        assert "lookup_customer(private_data) → echo(egress)" in msg

    mcp_session(f"{gov.base}/flows", body)


def get(gov, path, agent="agent-a", method="GET", **kw):
    headers = {"x-agent": agent} if agent else {}
    return httpx.request(method, f"{gov.base}{path}", headers=headers, timeout=15, **kw)


def test_agent_id_action_types_and_excluded_paths(gov):
    r = get(gov, "/gov/customers/123", agent=None)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "agent_id_required"
    r = get(gov, "/gov/customers/123")
    assert r.status_code == 200
    assert r.headers["x-palisade-action"] == "read_customers"
    assert r.headers["x-palisade-risk-score"] == "10"
    assert r.headers["x-palisade-risk-level"] == "low"
    assert r.headers["x-palisade-action-id"].startswith("act_")
    assert get(gov, "/gov/v1/orders", method="POST", json={}).headers["x-palisade-action"] == "create_orders"
    r = get(gov, "/gov/secrets", method="PUT", json={})
    assert r.status_code == 451 and r.headers["x-palisade-decision"] == "deny"
    # Custom map with its own risk: above the hold threshold, so it waits (here: until the timer).
    # Excluded paths are not governed at all: no agent id needed, no governance headers.
    r = get(gov, "/gov/health", agent=None)
    assert r.status_code == 200 and "x-palisade-action-id" not in r.headers


def test_decision_cache_hits_and_expiry(gov):
    a = get(gov, "/gov/invoices/1", agent="cache-agent")
    b = get(gov, "/gov/invoices/2", agent="cache-agent")  # same normalised path
    assert a.headers["x-palisade-decision-cache"] == "miss"
    assert b.headers["x-palisade-decision-cache"] == "hit"
    assert get(gov, "/gov/invoices/3", agent="other-agent").headers["x-palisade-decision-cache"] == "miss"
    time.sleep(1.2)
    assert get(gov, "/gov/invoices/4", agent="cache-agent").headers["x-palisade-decision-cache"] == "miss"


def pending(gov, action):
    for _ in range(100):
        items = gov.adm("GET", "/admin/approvals?status=pending", role="viewer").json()["approvals"]
        found = [a for a in items if a["action"] == action]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no pending approval for {action}")


def test_hold_with_wait(gov):
    results = {}

    def call(name):
        results[name] = get(gov, "/gov/repos/9", agent="hold-agent", method="DELETE")

    t = threading.Thread(target=call, args=("approved",))
    t.start()
    a = pending(gov, "delete_repos")
    r = gov.adm("POST", f"/admin/approvals/{a['id']}/approve", json={"reason": "ticket 12"})
    assert r.status_code == 200 and r.json()["decided_by"] == "alice"
    t.join()
    assert results["approved"].status_code == 200
    # A call-scoped grant is used once: the same call is held again, and a denial refuses it.
    t = threading.Thread(target=call, args=("denied",))
    t.start()
    a = pending(gov, "delete_repos")
    assert gov.adm("POST", f"/admin/approvals/{a['id']}/deny", json={"reason": "no"}).status_code == 200
    t.join()
    assert results["denied"].status_code == 451
    assert "denied" in results["denied"].json()["error"]["message"]
    # High risk from a custom action map also holds; with nobody deciding, the wait ends in a denial.
    started = time.time()
    r = get(gov, "/gov/payments", method="POST", json={"amount": 5}, agent="payer")
    assert r.status_code == 451 and time.time() - started >= 3.9
    assert "not decided in time" in r.json()["error"]["message"]
    assert r.headers["x-palisade-risk-score"] == "90"
    assert r.headers["x-palisade-risk-level"] == "critical"


def test_hold_with_202_and_approval_expiry(gov):
    r = get(gov, "/async/files/3", method="DELETE", agent=None)
    assert r.status_code == 202
    approval = r.json()["error"]["approval_id"]
    assert r.headers["x-palisade-decision"] == "pending"
    # Approved for this action and agent for one second: the retry passes, then it lapses.
    ok = gov.adm("POST", f"/admin/approvals/{approval}/approve", json={"scope": "action", "ttl_seconds": 1})
    assert ok.status_code == 200
    assert get(gov, "/async/files/3", method="DELETE", agent=None).status_code == 200
    assert get(gov, "/async/files/4", method="DELETE", agent=None).status_code == 200
    time.sleep(1.2)
    r = get(gov, "/async/files/3", method="DELETE", agent=None)
    assert r.status_code == 202
    # A pending approval not decided within pending_ttl_seconds expires and cannot be granted.
    late = r.json()["error"]["approval_id"]
    time.sleep(2.2)
    assert gov.adm("GET", f"/admin/approvals/{late}", role="viewer").json()["status"] == "expired"
    assert gov.adm("POST", f"/admin/approvals/{late}/approve", json={}).status_code == 409
    audit = gov.adm("GET", "/admin/audit", role="viewer").json()["entries"]
    assert any(e["action"] == "approval.approved" and e["target"] == approval and e["actor"] == "alice" for e in audit)


def test_state_failure_follows_the_failure_mode(tmp_path):
    procs = []
    ports = {k: free_port() for k in ["llm", "palisade"]}
    try:
        p = subprocess.Popen([sys.executable, str(HERE / "servers.py"), "llm", str(ports["llm"])],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(ports["llm"], p)
        llm = f"http://127.0.0.1:{ports['llm']}/any"
        config = f"""
listen: 127.0.0.1:{ports['palisade']}
storage: {{ enabled: false }}
state: {{ memory: {{ max_keys: 2 }} }}
routes:
  - {{ name: closed, path_prefix: /closed, upstream: '{llm}', protocol: http, policy: p, failure_mode: fail_closed }}
  - {{ name: open, path_prefix: /open, upstream: '{llm}', protocol: http, policy: p, failure_mode: fail_open }}
policies:
  p:
    rate_limits:
      - {{ key: [agent], max_requests: 1000, period_seconds: 60 }}
"""
        pal, _ = start(tmp_path, config, procs)
        wait_port(ports["palisade"], pal)
        base = f"http://127.0.0.1:{ports['palisade']}"
        # Two agents fill the counter table; a third agent's counter cannot be stored.
        for agent in ["a1", "a2"]:
            assert httpx.get(f"{base}/closed/x", headers={"x-agent-id": agent}).status_code == 200
        r = httpx.get(f"{base}/closed/x", headers={"x-agent-id": "a3"})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "governance_unavailable"
        assert r.headers["x-palisade-decision"] == "error"
        r = httpx.get(f"{base}/open/x", headers={"x-agent-id": "a3"})
        assert r.status_code == 200
        assert r.json()["query"] == ""
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=5)


def test_metrics_are_scraped_from_the_admin_listener(gov):
    """Prometheus text on the admin listener, without a key, counting what the tests above did."""
    r = httpx.get(f"{gov.admin}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            series[name] = float(value)
    denied = series.get('palisade_requests_total{route="limited",protocol="mcp",decision="deny"}', 0)
    allowed = series.get('palisade_requests_total{route="limited",protocol="mcp",decision="allow"}', 0)
    assert denied >= 2 and allowed >= 100, text
    assert series.get('palisade_rate_limited_total{policy="default",limit="client_ip+tool"}', 0) >= 1, text
    assert any(k.startswith('palisade_findings_total{detector="pii",kind="us_ssn",') for k in series), text
    assert series.get("palisade_store_events_dropped_total") == 0
    assert series.get("palisade_store_events_written_total", 0) >= 100
    count = series['palisade_request_duration_seconds_count{route="limited"}']
    assert count == sum(v for k, v in series.items()
                        if k.startswith('palisade_requests_total{route="limited",'))
    assert series['palisade_request_duration_seconds_bucket{route="limited",le="+Inf"}'] == count
    assert "# TYPE palisade_findings_total counter" in text


def test_exchanges_are_recorded_and_listed_through_the_admin_api(gov):
    """Every exchange becomes an event in the SQLite store; findings carry masked snippets; the
    admin API lists them newest first with filters and cursor pagination."""
    async def body(s):
        r = await s.call_tool("lookup_customer", {"customer_id": "77"})
        assert "***-**-1120" in r.content[0].text

    mcp_session(f"{gov.base}/limited", body)
    deadline = time.time() + 5
    hits = []
    while time.time() < deadline and not hits:
        page = gov.adm("GET", "/admin/events?route=limited&detector=pii", role="viewer").json()
        hits = [e for e in page["items"] if any(f["kind"] == "us_ssn" for f in e["findings"])]
        time.sleep(0.1)
    assert hits, "the redacted tool result is recorded with its finding"
    event = hits[0]
    finding = next(f for f in event["findings"] if f["kind"] == "us_ssn")
    assert finding["action"] == "redact" and finding["detector"] == "pii"
    assert "Jane Doe" in finding["snippet"] and "078-05-1120" not in finding["snippet"]
    assert "SSN ***********" in finding["snippet"]
    one = gov.adm("GET", f"/admin/events/{event['request_id']}", role="viewer")
    assert one.status_code == 200 and one.json()["request_id"] == event["request_id"]
    assert gov.adm("GET", "/admin/events/no-such-id", role="viewer").status_code == 404

    page = gov.adm("GET", "/admin/events?route=limited&limit=5", role="viewer").json()
    assert len(page["items"]) == 5 and page["next"]
    older = gov.adm("GET", f"/admin/events?route=limited&limit=5&cursor={page['next']}", role="viewer").json()
    seqs = [e["seq"] for e in page["items"] + older["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    denied = gov.adm("GET", "/admin/events?route=limited&decision=deny", role="viewer").json()["items"]
    assert denied and all(e["decision"] == "deny" for e in denied)
    assert gov.adm("GET", "/admin/events?cursor=bogus", role="viewer").status_code == 400
    assert httpx.get(f"{gov.admin}/admin/events").status_code == 401
    stats = gov.adm("GET", "/admin/records", role="viewer").json()
    assert stats["stored"] >= 100 and stats["dropped"] == 0 and stats["failed"] == 0


def test_inventory_is_discovered_from_the_traffic(gov):
    """Endpoints with their ids folded, MCP tools with call counts, from what passed."""
    for n in (11, 12, 13):
        httpx.get(f"{gov.base}/gov/customers/{n}", headers={"x-agent": "inventory-bot"}, timeout=10)
    deadline = time.time() + 5
    while time.time() < deadline:
        inv = gov.adm("GET", "/admin/inventory", role="viewer").json()
        customers = [e for e in inv["endpoints"] if e["route"] == "gov" and e["path"] == "/gov/customers/{id}"]
        if customers and customers[0]["calls"] >= 3:
            break
        time.sleep(0.1)
    assert customers and customers[0]["method"] == "GET" and customers[0]["calls"] >= 3, ("endpoints", inv)
    echo = [t for t in inv["tools"] if t["route"] == "limited" and t["tool"] == "echo"]
    assert echo and echo[0]["calls"] >= 101 and echo[0]["refused"] >= 1, ("tools", inv["tools"])
    assert httpx.get(f"{gov.admin}/admin/inventory").status_code == 401


def unsigned_jwt(claims):
    import base64
    import json
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'none'})}.{enc(claims)}.sig"


def mcp_session_with(url, body, headers):
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def main():
        async with create_mcp_http_client(headers=headers) as client:
            async with streamable_http_client(url, http_client=client) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    return await body(session)
    return anyio.run(main)


def test_authorization_rules_on_tools_arguments_agents_claims_and_ip(gov):
    async def body(s):
        assert (await s.call_tool("echo", {"text": "hello"})).content[0].text == "hello"
        # A rule over the arguments: the same tool with other arguments is refused.
        with pytest.raises(McpError) as err:
            await s.call_tool("echo", {"text": "my secret plan"})
        assert err.value.error.code == -32003
        assert "no-secrets-in-echo" in str(err.value)
        # A rule over the client address (127.0.0.1 is not in 10.0.0.0/8), with its message.
        with pytest.raises(McpError) as err:
            await s.call_tool("lookup_customer", {"customer_id": "7"})
        assert "customer lookups only from the office network" in str(err.value)
        # A rule over JWT claims: no token, no `groups` claim.
        with pytest.raises(McpError) as err:
            await s.call_tool("read_page", {"url": "https://example.com"})
        assert "read-page-needs-admins" in str(err.value)

    mcp_session_with(f"{gov.base}/authz", body, {})

    async def admin_body(s):
        r = await s.call_tool("read_page", {"url": "https://example.com"})
        # Past the rule; the page's planted instruction is detection's business, not the rule's.
        assert "read-page-needs-admins" not in str(r)

    token = unsigned_jwt({"sub": "u1", "groups": ["admins"]})
    mcp_session_with(f"{gov.base}/authz", admin_body, {"authorization": f"Bearer {token}"})

    async def ops_body(s):
        # The first rule allows everything for this agent: later rules are not evaluated.
        assert "Customer 7" in (await s.call_tool("lookup_customer", {"customer_id": "7"})).content[0].text

    mcp_session_with(f"{gov.base}/authz", ops_body, {"x-agent-id": "ops-bot"})


def rpc_call(gov, path, tool, args, agent="cache-check"):
    return httpx.post(f"{gov.base}{path}", json={"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                                 "params": {"name": tool, "arguments": args}},
                      headers={"accept": "application/json", "x-agent-id": agent},
                      timeout=10)


def test_authorization_rules_are_not_served_from_the_decision_cache(gov):
    # Same agent, same tool, same path: the static decision is a cache hit, yet the rule over the
    # arguments is evaluated again and refuses the second call.
    a = rpc_call(gov, "/authz", "echo", {"text": "fine"})
    b = rpc_call(gov, "/authz", "echo", {"text": "a secret"})
    c = rpc_call(gov, "/authz", "echo", {"text": "fine again"})
    assert a.headers["x-palisade-decision-cache"] == "miss"
    assert b.headers["x-palisade-decision-cache"] == "hit"
    assert c.headers["x-palisade-decision-cache"] == "hit"
    assert a.headers["x-palisade-decision"] != "deny"
    assert b.headers["x-palisade-decision"] == "deny"
    assert b.json()["error"]["code"] == -32003
    assert c.headers["x-palisade-decision"] != "deny"


def test_authorization_rules_on_http_method_headers_and_tenant(gov):
    url = f"{gov.base}/authz-http/files/1"
    assert httpx.get(url).status_code == 200
    # `hold` joins the approval flow (async here: 202 with an approval id).
    r = httpx.delete(url, headers={"x-role": "intern"})
    assert r.status_code == 202 and r.json()["error"]["approval_id"].startswith("apr_")
    assert "deletes-need-an-admin-role" in r.json()["error"]["message"]
    assert httpx.delete(url, headers={"x-role": "admin"}).status_code == 200
    # No x-role header at all: the rule cannot be evaluated, and fail_closed refuses.
    r = httpx.delete(url)
    assert r.status_code == 403
    assert "could not be evaluated" in r.json()["error"]["message"]
    r = httpx.put(url, json={}, headers={"x-tenant-id": "globex"})
    assert r.status_code == 403 and "writes-only-for-acme" in r.json()["error"]["message"]
    assert httpx.put(url, json={}, headers={"x-tenant-id": "acme"}).status_code == 200


def test_tools_list_changed_triggers_a_recheck_before_the_client_lists(gov):
    def weather_pin():
        pins = gov.adm("GET", "/admin/tools?route=changing", role="viewer").json()["tools"]
        return next((p for p in pins if p["tool"] == "weather"), None)

    async def body(s):
        assert "weather" in {t.name for t in (await s.list_tools()).tools}
        assert weather_pin()["state"] == "pinned"
        assert (await s.call_tool("weather", {"city": "Oslo"})).content[0].text == "Sunny in Oslo"
        # The server changes `weather` and announces it. The client does not list again:
        # Palisade fetches tools/list itself in this session and quarantines the changed tool.
        assert (await s.call_tool("update_weather", {})).content[0].text == "updated"
        deadline = time.time() + 5
        while weather_pin()["state"] != "quarantined" and time.time() < deadline:
            await anyio.sleep(0.05)
        pin = weather_pin()
        assert pin["state"] == "quarantined", pin
        assert "description" in pin["note"]
        with pytest.raises(McpError) as err:
            await s.call_tool("weather", {"city": "Oslo"})
        assert "quarantine" in str(err.value)
        # When the client does list, the changed tool is hidden.
        assert "weather" not in {t.name for t in (await s.list_tools()).tools}

    mcp_session(f"{gov.base}/changing", body)
    audit = gov.adm("GET", "/admin/audit?limit=100", role="viewer").json()["entries"]
    assert any(e["action"] == "tools.rechecked" and e["target"].startswith("changing|") for e in audit)


def rpc(i, method, **params):
    return {"jsonrpc": "2.0", "id": i, "method": method, "params": params}


def answers_of(r):
    """The JSON-RPC answers of a response, JSON or SSE, batches flattened, by id."""
    import json
    if r.headers["content-type"].startswith("text/event-stream"):
        msgs = [json.loads(l[5:]) for l in r.text.splitlines() if l.startswith("data:")]
    else:
        msgs = [r.json()]
    return {a.get("id"): a for m in msgs for a in (m if isinstance(m, list) else [m])}


def test_jsonrpc_batches_are_governed_message_by_message(gov):
    """A batch cannot carry a call that would be refused alone: each message meets its own
    rules and limits, and the first refusal refuses the whole batch, nothing forwarded."""
    hdrs = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    batch = [rpc(1, "tools/call", name="echo", arguments={"text": "hello"}),
             rpc(2, "tools/call", name="echo", arguments={"text": "a secret"}),
             {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}]
    r = httpx.post(f"{gov.base}/authz", json=batch, headers=hdrs, timeout=10)
    assert r.status_code == 200, r.text
    answers = answers_of(r)
    assert set(answers) == {1, 2}, "one error per request; the notification gets none"
    assert "no-secrets-in-echo" in answers[2]["error"]["message"]
    assert answers[2]["error"]["code"] == -32003
    assert answers[1]["error"]["data"]["code"] == "batch_refused"
    assert answers[1]["error"]["data"]["refused_index"] == 1
    assert r.headers["x-palisade-decision"] == "deny"

    # 101 calls of one tool in one batch: the limit of 100 per IP per tool still holds.
    many = [rpc(i, "tools/call", name="read_page", arguments={"url": "https://example.com"}) for i in range(101)]
    r = httpx.post(f"{gov.base}/limited", json=many, headers=hdrs, timeout=30)
    answers = answers_of(r)
    assert answers[100]["error"]["code"] == -32029, answers[100]
    assert answers[100]["error"]["data"]["retry_after_seconds"] >= 1
    assert answers[0]["error"]["data"]["code"] == "batch_refused"
    assert "retry-after" in r.headers


def test_a_batched_tools_list_is_reviewed_like_a_single_one(gov):
    """A quarantined tool stays hidden, and stays refused, when asked for inside a batch."""
    hdrs = {"accept": "application/json", "content-type": "application/json"}
    url = f"{gov.base}/rug-batch"
    first = answers_of(httpx.post(url, json=[rpc(1, "tools/list"), rpc(2, "ping")], headers=hdrs, timeout=10))
    assert {t["name"] for t in first[1]["result"]["tools"]} == {"echo", "weather"}
    r = gov.adm("POST", "/admin/tools/quarantine", role="admin",
                json={"route": "rug-batch", "tool": "echo", "reason": "batch test"})
    assert r.status_code == 200, r.text

    r = httpx.post(url, json=[rpc(7, "tools/list"), rpc(8, "ping")], headers=hdrs, timeout=10)
    assert r.status_code == 200, r.text
    answers = answers_of(r)
    assert {t["name"] for t in answers[7]["result"]["tools"]} == {"weather"}
    assert answers[8]["result"] == {}, "the other answer of the batch passes"
    assert r.headers["x-palisade-decision"] == "redact"
    r = httpx.post(url, json=[rpc(9, "tools/call", name="echo", arguments={"text": "hi"})], headers=hdrs, timeout=10)
    assert "quarantine" in answers_of(r)[9]["error"]["message"]

    assert gov.adm("POST", "/admin/tools/release", role="admin",
                   json={"route": "rug-batch", "tool": "echo"}).status_code == 200
    r = httpx.post(url, json=[rpc(10, "tools/call", name="echo", arguments={"text": "hi"})], headers=hdrs, timeout=10)
    assert answers_of(r)[10]["result"]["content"][0]["text"] == "hi"


def test_monitor_routes_report_what_governance_would_do(gov):
    """A monitor route forwards everything, and records what governance would have refused."""
    async def body(s):
        r = await s.call_tool("echo", {"text": "a secret"})
        assert r.content[0].text == "a secret", "monitor mode does not refuse"

    mcp_session(f"{gov.base}/watched", body)
    deadline = time.time() + 5
    hits = []
    while time.time() < deadline and not hits:
        page = gov.adm("GET", "/admin/events?route=watched", role="viewer").json()
        hits = [f for e in page["items"] for f in e["findings"] if f["kind"] == "rule_denied"]
        time.sleep(0.1)
    assert hits and hits[0]["action"] == "would_deny", hits
    log = Path(gov.log).read_text()
    assert "governance decision (monitor: not enforced)" in log and '"would":"would_deny"' in log


def test_client_address_from_a_trusted_proxy(gov):
    """Behind a trusted proxy (here 127.0.0.1), the client is the nearest untrusted hop of
    X-Forwarded-For: rules over `source.ip` and the record see it, and an address the client
    wrote into the header itself is not believed."""
    async def office(s):
        return (await s.call_tool("lookup_customer", {"customer_id": "7"})).content[0].text

    assert "Customer 7" in mcp_session_with(f"{gov.base}/authz", office, {"x-forwarded-for": "10.1.2.3"})

    async def spoofed(s):
        with pytest.raises(McpError) as err:
            await s.call_tool("lookup_customer", {"customer_id": "7"})
        return str(err.value)

    said = mcp_session_with(f"{gov.base}/authz", spoofed, {"x-forwarded-for": "10.1.2.3, 203.0.113.9"})
    assert "customer lookups only from the office network" in said
    deadline = time.time() + 5
    seen = set()
    while time.time() < deadline and "203.0.113.9" not in seen:
        items = gov.adm("GET", "/admin/events?route=authz&limit=50", role="viewer").json()["items"]
        seen = {e["client_ip"] for e in items}
        time.sleep(0.1)
    assert {"10.1.2.3", "203.0.113.9"} <= seen, seen
