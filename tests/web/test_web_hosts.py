"""The Host check: the explorer answers only the names it was started for (no DNS rebinding)."""
from __future__ import annotations

import httpx
import pytest

from artextract.cli import main
from artextract.web.middleware import hosts_for_bind

DECISION = {"id": "demo_0001", "task": "style", "action": "keep"}


def test_a_foreign_host_is_refused_before_anything_else(client):
    """A page on evil.example, whose name now resolves to 127.0.0.1, posts to the explorer: its Origin
    matches its Host, so only the Host check stops it."""
    evil = {"host": "evil.example:8000", "origin": "http://evil.example:8000"}
    r = client.post("/api/reviews", json=DECISION, headers=evil)
    assert r.status_code == 400 and "evil.example" in r.json()["detail"]
    assert client.get("/api/reviews").json() == []  # nothing was recorded
    assert client.get("/api/paintings", headers=evil).status_code == 400
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.post("/api/reviews", json=DECISION).status_code == 200  # the test client's own name is fine


def test_the_names_of_a_loopback_server_with_its_port(make_client):
    hosts, any_ip = hosts_for_bind("127.0.0.1", 8000)
    assert set(hosts) == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"} and not any_ip
    c = make_client(run=False, index=False, allowed_hosts=hosts)
    for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000"):
        assert c.get("/api/health", headers={"host": host}).status_code == 200, host
    for host in ("localhost:8001", "localhost", "evil.example:8000", "127.0.0.1.evil.example:8000", "",
                 "localhost:8000@evil", "[::1", "x" * 5000):
        r = c.get("/api/health", headers={"host": host})
        assert r.status_code == 400, host
        assert len(r.content) < 400
    assert c.get("/api/health").status_code == 400  # "testserver" is not one of them


def test_a_server_on_every_interface_answers_ip_addresses_but_no_other_name(make_client):
    hosts, any_ip = hosts_for_bind("0.0.0.0", 8000)
    assert {"localhost:8000", "127.0.0.1:8000"} <= set(hosts) and any_ip
    assert hosts_for_bind("::", 8000)[1] and hosts_for_bind("192.168.1.5", 80) == (["192.168.1.5:80"], False)
    assert hosts_for_bind("::1", 8000)[0][0] == "[::1]:8000"
    c = make_client(run=False, index=False, allowed_hosts=hosts + ["art.example.org"], ip_port=8000)
    for host in ("192.168.1.5:8000", "[fe80::1]:8000", "localhost:8000", "art.example.org", "art.example.org:443"):
        assert c.get("/api/health", headers={"host": host}).status_code == 200, host
    for host in ("192.168.1.5:9000", "rebind.evil.example:8000"):
        assert c.get("/api/health", headers={"host": host}).status_code == 400, host


def test_serve_refuses_an_allowed_host_that_is_not_a_host_name(web_demo, tmp_path, capsys):
    argv = ["serve", "--catalog", str(web_demo), "--db", str(tmp_path / "r.sqlite"), "--no-thumb-cache"]
    assert main(argv + ["--allowed-host", "https://art.example.org/"]) == 2
    assert "--allowed-host takes a host name" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_allowed_host(server_factory):
    """`serve --allowed-host NAME` (repeatable) adds names; DNS rebinding to 127.0.0.1 stays refused."""
    s = server_factory(extra=["--allowed-host", "art.example.org", "--allowed-host", "review.example.org:8443"])
    assert httpx.get(s.url + "/api/health").status_code == 200
    assert httpx.get(f"http://localhost:{s.port}/api/health").status_code == 200
    assert httpx.get(s.url + "/api/health", headers={"host": "art.example.org"}).status_code == 200
    assert httpx.get(s.url + "/api/health", headers={"host": "review.example.org:8443"}).status_code == 200
    assert httpx.get(s.url + "/api/health", headers={"host": "review.example.org:8000"}).status_code == 400
    evil = {"host": f"evil.example:{s.port}", "origin": f"http://evil.example:{s.port}"}
    r = httpx.post(s.url + "/api/reviews", json=DECISION, headers=evil)
    assert r.status_code == 400
    assert httpx.get(s.url + "/api/reviews").json() == []
