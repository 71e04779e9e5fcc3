"""Contract tests for the endpoints that speak other plugins' wire formats, with the payload
shapes those plugins send (Kong header tables with list values, bodies as strings)."""

import json
from pathlib import Path

import httpx

from conftest import AKTO_KEY

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "compat"


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def post(palisade, path, payload, headers=None, source="127.0.0.1"):
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as c:
        return c.post(f"{palisade.base}{path}", json=payload, headers=headers or {})


def test_akto_allowed_request(palisade):
    call = fixture("akto_request_injection.json")
    call["request_body"] = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                       "params": {"name": "fetch", "arguments": {"url": "https://example.com"}}})
    r = post(palisade, "/process/request", call)
    assert r.status_code == 200
    v = r.json()
    assert v["is_blocked"] is False
    assert v["modified_payload"] == "" and v["blocked_response"] is None


def test_akto_blocked_request_carries_the_answer_the_plugin_sends(palisade):
    r = post(palisade, "/process/request", fixture("akto_request_injection.json"))
    assert r.status_code == 200
    v = r.json()
    assert v["is_blocked"] is True
    # The plugin answers the client with this object (status 403): a JSON-RPC error for MCP.
    assert v["blocked_response"]["id"] == 12
    assert v["blocked_response"]["error"]["code"] == -32001


def test_akto_redacted_response_is_the_modified_payload(palisade):
    r = post(palisade, "/process/response", fixture("akto_response_ssn.json"))
    v = r.json()
    assert r.status_code == 200 and v["is_blocked"] is False
    modified = json.loads(v["modified_payload"])
    assert modified["result"]["content"][0]["text"] == "Customer 42: Jane Doe, SSN ***-**-1120"
    assert modified["id"] == 3


def test_akto_both_returns_both_results_and_the_time(palisade):
    call = fixture("akto_response_ssn.json")
    call["mode"] = "async"
    v = post(palisade, "/process/both", call).json()
    assert v["request_result"]["is_blocked"] is False
    assert "***-**-1120" in v["response_result"]["modified_payload"]
    assert isinstance(v["total_time_ms"], float) and v["total_time_ms"] >= 0


def test_akto_query_params_are_inspected(palisade):
    call = fixture("akto_request_injection.json")
    call["request_body"] = ""
    call["method"], call["endpoint"] = "GET", "/search"
    call["query_params"] = {"q": ["1' UNION SELECT password FROM users--"], "page": "2"}
    v = post(palisade, "/process/request", call).json()
    assert v["is_blocked"] is True


def test_akto_malformed_calls_are_400_not_500(palisade):
    for payload in [b"{not json", b"[]", json.dumps({"request_body": 42}).encode()]:
        transport = httpx.HTTPTransport(local_address="127.0.0.1")
        with httpx.Client(transport=transport, timeout=10) as c:
            r = c.post(f"{palisade.base}/process/request", content=payload)
        assert r.status_code == 400, payload
        assert r.json()["error"]["code"] == "bad_request"
    r = post(palisade, "/process/response", fixture("akto_request_injection.json"))
    assert r.status_code == 400 and "response_body" in r.json()["error"]["message"]


def test_akto_keys_and_networks(palisade):
    call = fixture("akto_request_injection.json")
    # Keyless from a network no collector trusts: refused.
    r = post(palisade, "/process/request", call, source="127.0.0.2")
    assert r.status_code == 401
    # An unknown key is refused even from a trusted network.
    r = post(palisade, "/process/request", call, headers={"Authorization": "Bearer wrong-key-000000"})
    assert r.status_code == 401
    # A known key works from anywhere.
    r = post(palisade, "/process/request", call, headers={"x-api-key": AKTO_KEY}, source="127.0.0.2")
    assert r.status_code == 200 and r.json()["is_blocked"] is True
    # The native API never trusts a network.
    r = post(palisade, "/v1/guard/request", {"body": "hi"})
    assert r.status_code == 401
