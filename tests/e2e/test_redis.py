"""Several replicas on one Redis: two real palisade processes share a real redis-server
(Debian's package, started here on 127.0.0.1 at a free port), with real MCP SDK servers and
clients and the admin API.

- a limit of 100 per IP per tool holds across both replicas (100 pass in all, not 200);
- an approval granted through replica A's admin API releases a call waiting on replica B
  within a second (pub/sub);
- a tool quarantined through A is hidden and refused on B;
- Redis killed mid-load: the fail_closed route refuses, the fail_open route serves from local
  state (its own limit still bites) and says so once in the log, nobody panics, and both go back
  to Redis when it returns.

Records (events from both replicas in one PostgreSQL store) are checked where the PostgreSQL
store is tested; add `storage: { postgres: ... }` to `replica_config` to cover them here.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import HERE, free_port, wait_port
from test_govern import mcp_session, start

try:  # mcp 2.x
    from mcp.shared.exceptions import MCPError as McpError
except ImportError:  # mcp 1.x
    from mcp.shared.exceptions import McpError

APPROVER, ADMIN = "redis-approver-key-1", "redis-admin-key-2"


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def redis_binary():
    found = shutil.which("redis-server")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (scripts/test.sh installs it)")
        pytest.skip("redis-server is not installed")
    return found


class Redis:
    """A throwaway redis-server that can be killed and started again on the same port."""

    def __init__(self, tmp):
        self.binary, self.port, self.tmp, self.proc = redis_binary(), free_port(), tmp, None
        self.url = f"redis://127.0.0.1:{self.port}/"

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def keys(self, pattern):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--scan", "--pattern", pattern],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.split()


def replica_config(port, admin, redis, mcp, llm):
    return f"""
listen: 127.0.0.1:{port}
storage: {{ enabled: false }}
state:
  redis: {{ url: '{redis.url}', key_prefix: 'e2e:' }}
admin:
  listen: 127.0.0.1:{admin}
  keys:
    - {{ name: alice, sha256: {sha(APPROVER)}, role: approver }}
    - {{ name: root, sha256: {sha(ADMIN)}, role: admin }}
routes:
  - {{ name: limited, path_prefix: /limited, upstream: 'http://127.0.0.1:{mcp}/mcp', protocol: mcp, policy: limited }}
  - {{ name: pinned, path_prefix: /pinned, upstream: 'http://127.0.0.1:{mcp}/mcp', protocol: mcp, policy: pinned }}
  - {{ name: held, path_prefix: /held, upstream: '{llm}', protocol: http, policy: held }}
policies:
  # 100 per hour per client IP and tool: GCRA frees one more call every 36 s, so however slowly
  # a loaded machine runs the 150 calls, exactly 100 pass.
  limited:
    rate_limits:
      - {{ key: [client_ip, tool], max_requests: 100, period_seconds: 3600 }}
  pinned:
    tools: {{ pin: true, on_change: quarantine }}
  held:
    governance:
      hold_actions: ['^delete_']
      approval: {{ mode: wait, wait_ms: 8000 }}
"""


class Replica:
    def __init__(self, port, admin, log):
        self.base, self.admin, self.log = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", log

    def adm(self, method, path, key=APPROVER, **kw):
        return httpx.request(method, f"{self.admin}{path}", headers={"authorization": f"Bearer {key}"},
                             timeout=10, **kw)


def stop_all(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    redis = Redis(tmp)
    procs = []
    try:
        redis.start()
        procs.append(redis.proc)
        ports = {k: free_port() for k in ["mcp", "llm", "a", "a_admin", "b", "b_admin"]}
        for kind, key in [("mcp-http", "mcp"), ("llm", "llm")]:
            p = subprocess.Popen([sys.executable, str(HERE / "servers.py"), kind, str(ports[key])],
                                 stdout=subprocess.DEVNULL, stderr=open(tmp / f"{key}.log", "w"))
            procs.append(p)
            wait_port(ports[key], p)
        llm = f"http://127.0.0.1:{ports['llm']}/any"
        out = []
        for name in ["a", "b"]:
            d = tmp / name
            d.mkdir()
            p, log = start(d, replica_config(ports[name], ports[f"{name}_admin"], redis, ports["mcp"], llm), procs)
            wait_port(ports[name], p)
            wait_port(ports[f"{name}_admin"], p)
            out.append(Replica(ports[name], ports[f"{name}_admin"], log))
        for r in out:
            ready = httpx.get(f"{r.base}/health/ready")
            assert ready.status_code == 200 and ready.json()["checks"]["state"] == "ok", ready.text
        yield out[0], out[1], redis
        for p in procs[1:]:
            assert p.poll() is None, "a process died during the tests"
        for r in out:
            assert "panicked" not in Path(r.log).read_text()
    finally:
        stop_all(procs)


def test_a_limit_of_100_per_ip_per_tool_holds_across_two_replicas(replicas):
    a, b, redis = replicas
    passed, refused = [], []

    async def body_b(sb):
        async def body(sa):
            for i in range(150):
                s = sa if i % 2 == 0 else sb
                try:
                    r = await s.call_tool("echo", {"text": f"n{i}"})
                    assert r.content[0].text == f"n{i}"
                    passed.append(i)
                except McpError as e:
                    assert e.error.code == -32029, e
                    refused.append(i)
        return await open_session(f"{a.base}/limited", body)

    mcp_session(f"{b.base}/limited", body_b)
    assert len(passed) == 100 and len(refused) == 50, (len(passed), len(refused))
    # Both replicas served part of the 100.
    assert {i % 2 for i in passed} == {0, 1}
    assert any(":rate:" in k for k in redis.keys("e2e:rate:*"))


async def open_session(url, body):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    async with streamable_http_client(url) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            return await body(session)


def test_an_approval_on_replica_a_releases_a_call_waiting_on_replica_b_within_a_second(replicas):
    a, b, _ = replicas
    result = {}

    def call():
        result["r"] = httpx.delete(f"{b.base}/held/repos/9", headers={"x-agent-id": "deployer"}, timeout=15)
        result["done"] = time.monotonic()

    t = threading.Thread(target=call)
    t.start()
    found = None
    for _ in range(200):
        items = a.adm("GET", "/admin/approvals?status=pending").json()["approvals"]
        found = next((x for x in items if x["action"] == "delete_repos"), None)
        if found:
            break
        time.sleep(0.02)
    assert found, "the call held on B is pending on A"
    time.sleep(0.3)  # B is waiting now
    sent = time.monotonic()
    r = a.adm("POST", f"/admin/approvals/{found['id']}/approve", json={"reason": "ticket 7"})
    assert r.status_code == 200 and r.json()["decided_by"] == "alice", r.text
    t.join(timeout=10)
    assert result["r"].status_code == 200, result["r"].text
    took = result["done"] - sent
    assert took < 1.0, f"released {took:.3f} s after the approval"
    print(f"approval on A released the call on B after {took * 1000:.0f} ms")


def test_a_tool_quarantined_on_replica_a_is_hidden_and_refused_on_replica_b(replicas):
    a, b, _ = replicas

    async def names(s):
        return {t.name for t in (await s.list_tools()).tools}

    assert "echo" in mcp_session(f"{a.base}/pinned", names)  # pinned on first sight, through A
    r = a.adm("POST", "/admin/tools/quarantine", key=ADMIN,
              json={"route": "pinned", "tool": "echo", "reason": "incident 4"})
    assert r.status_code == 200, r.text

    async def on_b(s):
        listed = await names(s)
        with pytest.raises(McpError) as err:
            await s.call_tool("echo", {"text": "hi"})
        return listed, str(err.value)

    listed, refusal = mcp_session(f"{b.base}/pinned", on_b)
    assert "echo" not in listed and "lookup_customer" in listed
    assert "quarantine" in refusal
    # Released through B, served again through A.
    assert b.adm("POST", "/admin/tools/release", key=ADMIN, json={"route": "pinned", "tool": "echo"}).status_code == 200
    assert "echo" in mcp_session(f"{a.base}/pinned", names)


FAULT_CONFIG = """
listen: 127.0.0.1:{port}
admin: {{ listen: '127.0.0.1:{admin}' }}
storage: {{ enabled: false }}
state:
  redis: {{ url: '{url}', key_prefix: 'fault:', retry_interval_ms: 200, command_timeout_ms: 200 }}
routes:
  - {{ name: closed, path_prefix: /closed, upstream: '{llm}', protocol: http, policy: p, failure_mode: fail_closed }}
  - {{ name: open, path_prefix: /open, upstream: '{llm}', protocol: http, policy: p, failure_mode: fail_open }}
policies:
  p:
    rate_limits:
      - {{ key: [agent], max_requests: 5, period_seconds: 60 }}
"""


def log_lines(log, text):
    return [l for l in Path(log).read_text().splitlines() if text in l]


def test_redis_killed_mid_load_each_route_follows_its_failure_mode_and_recovers(tmp_path):
    redis = Redis(tmp_path)
    procs = []
    try:
        redis.start()
        procs.append(redis.proc)
        ports = {k: free_port() for k in ["llm", "palisade", "admin"]}
        p = subprocess.Popen([sys.executable, str(HERE / "servers.py"), "llm", str(ports["llm"])],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(ports["llm"], p)
        llm = f"http://127.0.0.1:{ports['llm']}/any"
        pal, log = start(tmp_path, FAULT_CONFIG.format(port=ports["palisade"], admin=ports["admin"], url=redis.url, llm=llm), procs)
        wait_port(ports["palisade"], pal)
        wait_port(ports["admin"], pal)
        base = f"http://127.0.0.1:{ports['palisade']}"
        client = httpx.Client(timeout=10)

        def metrics():
            text = client.get(f"http://127.0.0.1:{ports['admin']}/metrics").text
            return dict(l.rsplit(" ", 1) for l in text.splitlines() if l.startswith("palisade_state_"))

        def get(route, agent):
            return client.get(f"{base}/{route}/x", headers={"x-agent-id": agent})

        assert get("closed", "warm").status_code == 200 and get("open", "warm").status_code == 200
        assert redis.keys("fault:rate:*"), "counters live in Redis"
        assert metrics() == {"palisade_state_up": "1", "palisade_state_fallback_total": "0"}

        # Load on both routes, with Redis killed part way through.
        seen = {"closed": [], "open": []}
        stop = threading.Event()

        def load():
            n = 0
            while not stop.is_set() and n < 4000:
                for route in ("closed", "open"):
                    r = client.get(f"{base}/{route}/x", headers={"x-agent-id": f"load-{n}"})
                    seen[route].append((time.monotonic(), r.status_code))
                n += 1

        t = threading.Thread(target=load)
        t.start()
        time.sleep(0.5)
        killed = time.monotonic()
        redis.kill()
        time.sleep(1.0)
        stop.set()
        t.join(timeout=10)
        before = {k: {s for at, s in v if at < killed} for k, v in seen.items()}
        after = {k: {s for at, s in v if at > killed + 0.5} for k, v in seen.items()}
        assert before == {"closed": {200}, "open": {200}}, before
        assert after == {"closed": {503}, "open": {200}}, after

        r = get("closed", "x")
        assert r.status_code == 503 and r.json()["error"]["code"] == "governance_unavailable"
        # fail_open: local state, not no state: this replica's own counter still limits.
        codes = [get("open", "local-limit").status_code for _ in range(6)]
        assert codes == [200] * 5 + [429], codes
        ready = client.get(f"{base}/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["state"] == "unreachable"
        down = metrics()
        assert down["palisade_state_up"] == "0" and int(down["palisade_state_fallback_total"]) > 10, down
        # Once per outage, however many requests met it.
        assert len(log_lines(log, "redis unreachable: fail_closed routes refuse")) == 1
        assert sum(len(v) for v in seen.values()) > 50

        redis.start()
        procs.append(redis.proc)
        deadline = time.monotonic() + 10
        while get("closed", "back").status_code != 200:
            assert time.monotonic() < deadline, "fail_closed route did not recover"
            time.sleep(0.1)
        assert get("open", "back").status_code == 200
        assert redis.keys("fault:rate:*"), "counters are in Redis again"
        assert client.get(f"{base}/health/ready").status_code == 200
        assert len(log_lines(log, "redis reachable again")) == 1
        assert metrics()["palisade_state_up"] == "1"
        assert pal.poll() is None
        assert "panicked" not in Path(log).read_text()
    finally:
        stop_all(procs)
