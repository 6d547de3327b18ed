"""The MCP endpoint with the official `mcp` client: list the tools, search, read documents;
hostile calls get tool errors or envelopes, never a hang or a plain-text body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from mcp.client import Client

from tiergate_rag.app import create_app
from tiergate_rag.settings import McpSettings, RagSettings
from tiergate_testkit.asgi import serve_in_loop

from .conftest import ADMIN

JSON_RPC = {"accept": "application/json, text/event-stream"}


@pytest.fixture
async def rag_url(rag_settings: RagSettings) -> AsyncIterator[str]:
    async with serve_in_loop(create_app(rag_settings)) as url:
        yield url


def text_of(result: Any) -> str:
    [content] = result.content
    text: str = content.text
    return text


async def test_client_lists_tools_and_searches(rag_url: str) -> None:
    async with Client(f"{rag_url}/mcp/") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"search_docs", "get_document"}
        schema = tools["search_docs"].input_schema
        assert schema["required"] == ["query"]
        assert schema["properties"]["k"]["maximum"] == 50

        result = await client.call_tool("search_docs", {"query": "anonymous requests", "k": 2})
        assert not result.is_error
        hits = json.loads(text_of(result))["results"]
        assert hits[0]["doc_id"] == "guide.md"
        assert hits[0]["heading_path"] == ["Tiergate", "Limits"]
        assert "twenty requests" in hits[0]["text"]
        assert result.structured_content == {"results": hits}

        # The German analyzer through MCP too, and the filters.
        german = await client.call_tool("search_docs", {"query": "Gezeit", "language": "de"})
        assert [h["doc_id"] for h in json.loads(text_of(german))["results"]] == ["de.md"]
        none = await client.call_tool("search_docs", {"query": "Gezeit", "language": "en"})
        assert json.loads(text_of(none))["results"] == []


async def test_get_document_returns_the_text_as_ingested(rag_url: str) -> None:
    text = "# Runbook\n\n## Restart\n\n" + "Restart the engine with care. " * 60
    async with httpx.AsyncClient(base_url=rag_url) as http:
        put = await http.put(
            "/v1/documents/ops/runbook",
            json={"text": text},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert put.status_code == 200
        assert put.json()["chunks"] > 1  # several chunks, overlapping
    async with Client(f"{rag_url}/mcp/") as client:
        result = await client.call_tool("get_document", {"doc_id": "ops/runbook"})
        assert not result.is_error
        document = json.loads(text_of(result))
        assert document["text"] == text  # whole, not glued from overlapping chunks
        assert document["title"] == "Runbook"
        first = {"id": "ops/runbook#0", "heading_path": ["Runbook", "Restart"]}
        assert document["chunks"][0] == first
        assert [c["id"] for c in document["chunks"]] == [
            f"ops/runbook#{i}" for i in range(len(document["chunks"]))
        ]


@pytest.mark.parametrize(
    ("tool", "arguments", "message_part"),
    [
        ("search_docs", {"query": "   "}, "empty"),
        ("search_docs", {"query": ""}, "query"),
        ("search_docs", {"query": "x" * 5000}, "longer than"),
        ("search_docs", {"query": "ok", "k": 0}, "k"),
        ("search_docs", {"query": "ok", "k": 51}, "k"),
        ("search_docs", {"query": 5}, "query"),
        ("search_docs", {}, "query"),
        ("get_document", {"doc_id": "missing.md"}, "No document"),
        ("get_document", {}, "doc_id"),
        ("no_such_tool", {}, "Unknown tool"),
    ],
)
async def test_bad_tool_calls_are_tool_errors(
    rag_url: str, tool: str, arguments: dict[str, object], message_part: str
) -> None:
    async with Client(f"{rag_url}/mcp/") as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    assert message_part in text_of(result)
    assert "Traceback" not in text_of(result)


def _rpc(method: str, **params: object) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "code"),
    [
        ("GET", "/mcp/", None, JSON_RPC, 405, "method_not_allowed"),
        ("DELETE", "/mcp/", None, JSON_RPC, 405, "method_not_allowed"),
        ("POST", "/mcp/", b"{}", {"content-type": "text/plain", **JSON_RPC}, 400, "bad_request"),
        ("POST", "/mcp/nope", b"{}", {"content-type": "application/json"}, 404, "unknown_url"),
        (
            "POST",
            "/mcp/",
            json.dumps(_rpc("tools/list")).encode(),
            {"content-type": "application/json", "host": "attacker.example", **JSON_RPC},
            421,
            "host_not_allowed",
        ),
        (
            "POST",
            "/mcp/",
            json.dumps(_rpc("tools/list")).encode(),
            {"content-type": "application/json", "origin": "https://evil.example", **JSON_RPC},
            403,
            "origin_not_allowed",
        ),
    ],
)
async def test_transport_errors_are_envelopes(
    rag_url: str,
    method: str,
    path: str,
    content: bytes | None,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    async with httpx.AsyncClient(base_url=rag_url, timeout=5) as http:
        response = await http.request(method, path, content=content, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "content",
    [b"{bad", b"[]", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": 7}', b"\xff"],
)
async def test_malformed_json_rpc_is_a_json_rpc_error(rag_url: str, content: bytes) -> None:
    async with httpx.AsyncClient(base_url=rag_url, timeout=5) as http:
        response = await http.post(
            "/mcp/", content=content, headers={"content-type": "application/json", **JSON_RPC}
        )
    assert response.status_code in {200, 400}
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] < 0  # a JSON-RPC error object, not a traceback


async def test_oversized_body_is_413(rag_settings: RagSettings) -> None:
    settings = msgspec.structs.replace(rag_settings, max_body_bytes=4096)
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as http,
    ):
        body = json.dumps(_rpc("tools/call", name="search_docs", arguments={"query": "x" * 9000}))
        response = await http.post(
            "/mcp/", content=body, headers={"content-type": "application/json", **JSON_RPC}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_configured_host_is_accepted_and_mcp_can_be_turned_off(
    rag_settings: RagSettings,
) -> None:
    rpc = json.dumps(_rpc("tools/list")).encode()
    headers = {"content-type": "application/json", "host": "rag.internal:8082", **JSON_RPC}
    named = msgspec.structs.replace(rag_settings, mcp=McpSettings(allowed_hosts=["rag.internal:*"]))
    async with (
        serve_in_loop(create_app(named)) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as http,
    ):
        listed = await http.post("/mcp/", content=rpc, headers=headers)
        assert listed.status_code == 200
        assert {t["name"] for t in listed.json()["result"]["tools"]} == {
            "search_docs",
            "get_document",
        }
    off = msgspec.structs.replace(rag_settings, mcp=McpSettings(enabled=False))
    async with (
        serve_in_loop(create_app(off)) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as http,
    ):
        gone = await http.post("/mcp/", content=rpc, headers=headers)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "unknown_url"
