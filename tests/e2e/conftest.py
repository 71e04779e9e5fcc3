"""Fixtures: real upstreams and a real Palisade, all on 127.0.0.1, started once per session."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# API keys of the guard API's collectors in the test configuration.
COLLECTOR_KEY = "e2e-collector-key-0123456789"
FULL_KEY = "e2e-full-logging-key-0123456789"
AKTO_KEY = "e2e-akto-plugin-key-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class Palisade:
    def __init__(self, port, log_path, ports):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.ports = ports

    def log(self):
        """Every JSON log line so far."""
        lines = []
        for line in Path(self.log_path).read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"raw": line})
        return lines

    def log_for(self, request_id, timeout=3.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [l for l in self.log() if l.get("fields", {}).get("request_id") == request_id]
            if found:
                return found
            time.sleep(0.05)
        return []


@pytest.fixture(scope="session")
def palisade(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("palisade")
    ports = {k: free_port() for k in ["mcp", "mcp_sse", "llm", "llm_tls", "ws", "palisade", "closed"]}
    procs = []
    # A private CA and a certificate for "localhost", to prove TLS to upstreams with an extra CA.
    ca_key, ca_crt, key, csr, crt = (tmp / n for n in ["ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"])
    ssl = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "2",
        "-subj", "/CN=palisade-test-ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    ext = tmp / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n")
    ssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
        "-days", "2", "-extfile", ext)
    try:
        for kind, key, extra in [("mcp-http", "mcp", []), ("mcp-sse", "mcp_sse", []), ("llm", "llm", []),
                                 ("llm", "llm_tls", [str(crt), str(key)]), ("ws", "ws", [])]:
            p = subprocess.Popen([sys.executable, str(HERE / "servers.py"), kind, str(ports[key]), *extra],
                                 stdout=subprocess.DEVNULL, stderr=open(tmp / f"{key}.log", "w"))
            procs.append(p)
            wait_port(ports[key], p)
        llm = f"http://127.0.0.1:{ports['llm']}"
        config = f"""
listen: 127.0.0.1:{ports['palisade']}
storage: {{ sqlite_path: '{tmp / "records.db"}' }}
timeouts: {{ header_ms: 1500 }}
tls: {{ extra_ca_file: '{ca_crt}' }}
limits: {{ max_request_body_bytes: 1048576 }}
routes:
  - {{ name: mcp, path_prefix: /mcp, upstream: 'http://127.0.0.1:{ports['mcp']}/mcp', protocol: mcp }}
  - {{ name: mcp-sse, path_prefix: /sse-mcp, upstream: 'http://127.0.0.1:{ports['mcp_sse']}', protocol: mcp }}
  - {{ name: openai, path_prefix: /openai, upstream: '{llm}', protocol: openai }}
  - {{ name: anthropic, path_prefix: /anthropic, upstream: '{llm}', protocol: anthropic }}
  - {{ name: monitor, path_prefix: /monitor, upstream: '{llm}', mode: monitor }}
  - {{ name: ws, path_prefix: /ws, upstream: 'http://127.0.0.1:{ports['ws']}' }}
  - {{ name: closed, path_prefix: /closed, upstream: '{llm}/fault', protocol: openai, failure_mode: fail_closed }}
  - {{ name: open, path_prefix: /open, upstream: '{llm}/fault', protocol: openai, failure_mode: fail_open }}
  - {{ name: tls, path_prefix: /tls, upstream: 'https://localhost:{ports['llm_tls']}', protocol: openai }}
  - {{ name: refused, path_prefix: /refused, upstream: 'http://127.0.0.1:{ports['closed']}', protocol: openai }}
collectors:
  - {{ name: e2e-gateway, api_key_env: PALISADE_E2E_COLLECTOR_KEY }}
  - {{ name: e2e-full, api_key_env: PALISADE_E2E_FULL_KEY, logging: full }}
  - {{ name: e2e-akto, api_key_env: PALISADE_E2E_AKTO_KEY, trusted_networks: ['127.0.0.1/32'] }}
"""
        cfg = tmp / "palisade.yaml"
        cfg.write_text(config)
        binary = os.environ.get("PALISADE_BIN", str(ROOT / "target" / "release" / "palisade"))
        log_path = tmp / "palisade.log"
        p = subprocess.Popen([binary, "serve", "--config", str(cfg), "--log-json"],
                             stdout=subprocess.DEVNULL, stderr=open(log_path, "w"),
                             env={**os.environ, "PALISADE_LOG": "info",
                                  "PALISADE_E2E_COLLECTOR_KEY": COLLECTOR_KEY,
                                  "PALISADE_E2E_FULL_KEY": FULL_KEY,
                                  "PALISADE_E2E_AKTO_KEY": AKTO_KEY})
        procs.append(p)
        wait_port(ports["palisade"], p)
        assert httpx.get(f"http://127.0.0.1:{ports['palisade']}/health/ready").status_code == 200
        yield Palisade(ports["palisade"], log_path, ports)
        assert p.poll() is None, "palisade died during the tests"
        text = Path(log_path).read_text()
        assert "panicked" not in text, "palisade panicked"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
