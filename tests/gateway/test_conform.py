"""Engine answers made OpenAI's shape (`upstream/conform.py`), over real engine output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tiergate_gateway.settings import ENV_PREFIX, BackendSettings, load
from tiergate_gateway.upstream.conform import conform_completion, with_extras
from tiergate_runtime.settings import SettingsError
from tiergate_testkit.openai_schema import SchemaViolation, validate_chat_completion

# Verbatim llama.cpp server answer (SmolLM2): no `refusal`, no `logprobs`, its `timings`.
LLAMA_CPP = (
    b'{"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant","content":'
    b'"Justice. Just a helpful AI"}}],"created":1796115027,"model":"smollm2-135m-instruct",'
    b'"system_fingerprint":"b0-unknown","object":"chat.completion","usage":{"completion_tokens":'
    b'20,"prompt_tokens":33,"total_tokens":53,"prompt_tokens_details":{"cached_tokens":0}},"id":'
    b'"chatcmpl-9QdB","timings":{"cache_n":0,"prompt_n":33,"prompt_ms":185.585}}'
)
# llama.cpp with `logprobs: true, top_logprobs: 1`: a token `id` extra, no `refusal` list.
LLAMA_CPP_LOGPROBS = LLAMA_CPP.replace(
    b'"Justice. Just a helpful AI"}}',
    b'"Just"},"logprobs":{"content":[{"id":8760,"token":"Just","bytes":[74,117,115,116],'
    b'"logprob":-5.0,"top_logprobs":[{"id":19556,"token":"Hello","bytes":[72],"logprob":-2.0}]}]}}',
)
# vLLM's shape (model_dump of its pydantic response): nulls OpenAI does not allow, extras.
VLLM = json.dumps(
    {
        "id": "chatcmpl-v",
        "object": "chat.completion",
        "created": 1,
        "model": "qwen2.5-14b",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "tool_calls": [
                        {
                            "id": "chatcmpl-tool-1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                    "reasoning_content": "The user asks for weather.",
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
                "stop_reason": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {
            "prompt_tokens": 10,
            "total_tokens": 15,
            "completion_tokens": 5,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }
).encode()


def conform(body: bytes, keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    out, _ = conform_completion(body, "tiergate-small", keep)
    value: dict[str, Any] = validate_chat_completion(out)
    return value


def test_the_raw_llama_cpp_answer_fails_the_schema_and_passes_once_conformed() -> None:
    with pytest.raises(SchemaViolation):
        validate_chat_completion(LLAMA_CPP)
    answer = conform(LLAMA_CPP)
    expected = json.loads(LLAMA_CPP)
    del expected["timings"]
    expected["model"] = "tiergate-small"
    expected["choices"][0]["message"]["refusal"] = None
    expected["choices"][0]["logprobs"] = None
    assert answer == expected


def test_usage_is_returned_for_accounting() -> None:
    _, usage = conform_completion(LLAMA_CPP, "m")
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (33, 20)


def test_kept_extras_are_copied_byte_for_byte_and_ours_never_duplicated() -> None:
    out, _ = conform_completion(LLAMA_CPP, "m", frozenset({"timings", "model", "absent"}))
    answer = validate_chat_completion(out)
    assert answer["timings"] == {"cache_n": 0, "prompt_n": 33, "prompt_ms": 185.585}
    assert b'"prompt_ms":185.585' in out
    assert answer["model"] == "m"
    assert out.count(b'"model"') == 1


def test_llama_cpp_logprobs_get_refusal_and_lose_token_ids() -> None:
    logprobs = conform(LLAMA_CPP_LOGPROBS)["choices"][0]["logprobs"]
    assert logprobs == {
        "content": [
            {
                "token": "Just",
                "logprob": -5.0,
                "top_logprobs": [{"token": "Hello", "logprob": -2.0, "bytes": [72]}],
                "bytes": [74, 117, 115, 116],
            }
        ],
        "refusal": None,
    }


def test_vllm_nulls_and_extras_are_dropped_reasoning_is_kept() -> None:
    answer = conform(VLLM)
    assert set(answer) == {"id", "object", "created", "model", "choices", "usage"}
    (choice,) = answer["choices"]
    assert set(choice) == {"index", "message", "finish_reason", "logprobs"}
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "The user asks for weather.",
        "tool_calls": [
            {
                "id": "chatcmpl-tool-1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    assert answer["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@pytest.mark.parametrize(
    ("finish_reason", "tool_call", "expected"),
    [
        ("stop", False, "stop"),
        ("length", False, "length"),
        ("content_filter", False, "content_filter"),
        ("abort", False, "stop"),  # an engine's own value
        (None, False, "stop"),
        (None, True, "tool_calls"),
        ("eos", True, "tool_calls"),
        ("tool_calls", True, "tool_calls"),
    ],
)
def test_finish_reason_is_one_of_openais(
    finish_reason: str | None, tool_call: bool, expected: str
) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if tool_call:
        message["tool_calls"] = [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    choice: dict[str, Any] = {"index": 0, "message": message}
    if finish_reason is not None:
        choice["finish_reason"] = finish_reason
    body = {"id": "c", "created": 1, "model": "e", "choices": [choice]}
    assert conform(json.dumps(body).encode())["choices"][0]["finish_reason"] == expected


def test_service_tier_outside_openais_values_is_dropped() -> None:
    body = {"id": "c", "created": 1, "model": "e", "choices": [], "service_tier": "gold"}
    assert "service_tier" not in conform(json.dumps(body).encode())
    body["service_tier"] = "flex"
    assert conform(json.dumps(body).encode())["service_tier"] == "flex"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b"[]",
        b'{"choices": []}',  # no id, created, model
        b'{"id":"c","created":1,"model":"e","object":"chat.completion.chunk","choices":[]}',
        b'{"id":"c","created":1,"model":"e","choices":[{"index":0,"message":{"role":"user",'
        b'"content":"x"}}]}',
        b'{"id":"c","created":1,"model":"e","choices":[],"usage":{"prompt_tokens":-1,'
        b'"completion_tokens":0,"total_tokens":0}}',
    ],
)
def test_what_is_not_a_chat_completion_raises(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        conform_completion(body, "m")


def test_with_extras_appends_to_an_object() -> None:
    source = b'{"a": 1, "timings": {"x": [1, 2]}, "b": "z"}'
    assert with_extras(b'{"id":"c"}', source, frozenset({"timings", "b"})) == (
        b'{"id":"c","timings":{"x": [1, 2]},"b":"z"}'
    )
    assert with_extras(b'{"id":"c"}', source, frozenset({"nope"})) == b'{"id":"c"}'


def test_keep_extras_setting_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[backends.cpu]\nbase_url = "http://127.0.0.1:8083/v1"\nkeep_extras = ["timings"]\n'
        '[[models]]\nid = "m"\nbackend = "cpu"\nengine_model = "e"\n'
    )
    environ = {f"{ENV_PREFIX}CONFIG": str(config)}
    assert load(environ).backends["cpu"].keep_extras == frozenset({"timings"})
    environ[f"{ENV_PREFIX}BACKENDS__CPU__KEEP_EXTRAS"] = '["timings", "prompt_logprobs"]'
    assert load(environ).backends["cpu"].keep_extras == {"timings", "prompt_logprobs"}
    assert BackendSettings(base_url="http://x/v1").keep_extras == frozenset()
    environ[f"{ENV_PREFIX}BACKENDS__CPU__KEEP_EXTRAS"] = '[""]'
    with pytest.raises(SettingsError, match="keep_extras"):
        load(environ)


def test_the_shipped_config_documents_keep_extras() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "gateway.toml"
    assert "keep_extras" in shipped.read_text()
