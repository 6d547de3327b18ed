"""End to end: sign-in, tiers and shared limits across real processes.

redis-server, the auth service, two gateway replicas and cpu-llm (llama.cpp with the real
SmolLM2) all run as processes on ephemeral ports; mail goes to a real SMTP sink; clients are the
official `openai` SDK and plain HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import httpx
import openai
import pytest

from tiergate_auth.sink import MailSink
from tiergate_testkit.redis_server import RedisServer
from tiergate_testkit.services import ServiceProcess

pytestmark = pytest.mark.e2e

ALIAS = "tiergate-small"
ENGINE_MODEL = "smollm2-135m-instruct"
PEPPER = "e2e-pepper-0123456789abcdefghijklmnop"
ADMIN = "e2e-admin-0123456789abcdefghijklmnopq"
INTERNAL = "e2e-internal-0123456789abcdefghijklm"


@dataclass
class Mesh:
    redis: RedisServer
    auth: ServiceProcess
    gateways: list[ServiceProcess]
    sink: MailSink
    # Clients are closed when the mesh stops: an SDK client left to the garbage collector
    # can lose its socket before its own close runs, and the ResourceWarning then fails
    # whichever later test the collection happens in (issue 10).
    clients: ExitStack = field(default_factory=ExitStack)

    def client(self, replica: int = 0, key: str = "anonymous") -> openai.OpenAI:
        base = f"{self.gateways[replica].base_url}/v1"
        return self.clients.enter_context(
            openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)
        )


def gateway_env(cpu: ServiceProcess, auth: ServiceProcess, redis_url: str) -> dict[str, str]:
    tiers = {
        "anonymous": {
            "models": [ALIAS],
            "max_tokens": 300,
            "requests": {"limit": 20, "window_s": 900},
            "tools": False,
        },
        "user": {"models": ["*"], "max_tokens": 1024},
        "agent": {"models": ["*"], "max_tokens": 4096},
    }
    return {
        "TIERGATE_GATEWAY_BACKENDS__CPU__BASE_URL": f"{cpu.base_url}/v1",
        "TIERGATE_GATEWAY_BACKENDS__CPU__KIND": "llamacpp",
        "TIERGATE_GATEWAY_BACKENDS__CPU__HEALTH_URL": f"{cpu.base_url}/readyz",
        "TIERGATE_GATEWAY_STORE__URL": redis_url,
        "TIERGATE_GATEWAY_AUTH__URL": auth.base_url,
        "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
        "TIERGATE_GATEWAY_AUTH__CACHE_TTL_S": "4",
        "TIERGATE_GATEWAY_TIERS": json.dumps(tiers),
    }


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    sink = MailSink().start()
    cpu_env = {
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__PARALLEL": "2",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
        "TIERGATE_CPU_LLM_ENGINE__MODEL_ID": ENGINE_MODEL,
    }
    with RedisServer() as redis:
        auth_env = {
            "TIERGATE_AUTH_STORE__URL": redis.url,
            "TIERGATE_AUTH_PEPPER": PEPPER,
            "TIERGATE_AUTH_ADMIN_TOKEN": ADMIN,
            "TIERGATE_AUTH_INTERNAL_TOKEN": INTERNAL,
            "TIERGATE_AUTH_SMTP__PORT": str(sink.port),
            # The gateways relay /v1/auth/* from here (auth trusts no proxy by default).
            "TIERGATE_AUTH_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        }
        with (
            ServiceProcess("tiergate_auth", "TIERGATE_AUTH_", auth_env) as auth,
            ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", cpu_env) as cpu,
        ):
            env = gateway_env(cpu, auth, redis.url)
            with (
                ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as first,
                ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", env) as second,
            ):
                mesh = Mesh(redis=redis, auth=auth, gateways=[first, second], sink=sink)
                with mesh.clients:
                    yield mesh
    sink.stop()


def test_sign_in_chat_refresh_logout_through_the_gateway(mesh: Mesh) -> None:
    gateway = mesh.gateways[0].base_url
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.org"
    with httpx.Client(base_url=gateway, timeout=30) as http:
        assert http.post("/v1/auth/otp/start", json={"email": email}).status_code == 202
        code = mesh.sink.wait_for(email, 1, 10).code
        tokens = http.post("/v1/auth/otp/verify", json={"email": email, "code": code}).json()
        assert tokens["tier"] == "user"

        client = mesh.client(key=tokens["access_token"])
        raw = client.chat.completions.with_raw_response.create(
            model=ALIAS,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=2000,
            seed=7,
            temperature=0,
        )
        assert raw.headers["x-tiergate-tier"] == "user"
        assert raw.headers["x-tiergate-max-tokens"] == "1024"  # the user tier's cap
        completion = raw.parse()
        assert completion.choices[0].message.content
        assert completion.usage is not None

        refreshed = http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        access = refreshed.json()["access_token"]
        stream = mesh.client(1, access).chat.completions.create(
            model=ALIAS,
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=16,
            stream=True,
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        out = http.post("/v1/auth/logout", headers={"authorization": f"Bearer {access}"})
        assert out.status_code == 200
    deadline = time.monotonic() + 6
    while True:
        try:
            mesh.client(0, access).chat.completions.create(
                model=ALIAS, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        except openai.AuthenticationError:
            break  # a 401
        assert time.monotonic() < deadline, "token still accepted 6 s after logout"
        time.sleep(0.25)


def test_two_replicas_enforce_one_anonymous_limit(mesh: Mesh) -> None:
    # Both replicas count in the same Redis: 20 requests in the window in total, whichever
    # replica gets them; the 21st is refused by either.
    http = [httpx.Client(base_url=g.base_url, timeout=30) for g in mesh.gateways]
    body = {"model": ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    statuses = []
    for index in range(21):
        response = http[index % 2].post("/v1/chat/completions", json=body)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    for client in http:
        client.close()
    first_refused = statuses.index(429)
    # Other tests in this module may have spent some of the window already, never more than 20.
    assert statuses[:first_refused] == [200] * first_refused
    assert first_refused <= 20
    with httpx.Client(timeout=30) as client:
        for gateway in mesh.gateways:
            refused = client.post(f"{gateway.base_url}/v1/chat/completions", json=body)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def tiergate_cli(mesh: Mesh, *args: str) -> str:
    """Run the `tiergate` command against the auth service; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "tiergate_auth.cli", "--url", mesh.auth.base_url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"TIERGATE_ADMIN_TOKEN": ADMIN, "PATH": "/usr/bin:/bin"},
    )
    return done.stdout


def test_api_key_revocation_reaches_both_replicas_within_5_s(mesh: Mesh) -> None:
    created = tiergate_cli(mesh, "keys", "create", "--owner", "e2e-agent", "--requests", "100/1m")
    key = created.splitlines()[0].strip()
    key_id = created.split("id ", 1)[1].split(",", 1)[0]
    for replica in (0, 1):
        raw = mesh.client(replica, key).chat.completions.with_raw_response.create(
            model=ALIAS, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert raw.headers["x-tiergate-tier"] == "agent"
        assert raw.headers["x-ratelimit-limit-requests"] == "100"
    listed = tiergate_cli(mesh, "keys", "list")
    assert key_id in listed
    assert key not in listed
    assert "revoked" in tiergate_cli(mesh, "keys", "revoke", key_id)
    revoked_at = time.monotonic()
    pending = {0, 1}
    while pending:
        for replica in sorted(pending):
            try:
                mesh.client(replica, key).models.list()
            except openai.AuthenticationError:
                pending.discard(replica)
        assert time.monotonic() - revoked_at < 5, f"replicas {pending} still accept the key"
        time.sleep(0.1)


def test_redis_killed_mid_run_keeps_serving(mesh: Mesh) -> None:
    body = {"model": ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    mesh.redis.kill()
    try:
        with httpx.Client(timeout=30) as client:
            for gateway in mesh.gateways:
                response = client.post(
                    f"{gateway.base_url}/v1/chat/completions",
                    json=body,
                    headers={"authorization": "Bearer anonymous"},
                )
                # Served by the per-process limiter (fresh after the anonymous window above),
                # never a 500.
                assert response.status_code == 200, response.text
                metrics = client.get(f"{gateway.base_url}/metrics").text
                assert "tiergate_gateway_limits_degraded_decisions_total 1.0" in metrics
    finally:
        mesh.redis.start()
