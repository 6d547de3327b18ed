"""Responses, chunks and model lists: decode real engine output, build SDK-valid JSON."""

import json

import msgspec
import openai.types
import openai.types.chat
import pytest

from tiergate_proto.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    FunctionToolCall,
    Model,
    ModelList,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

# Verbatim llama.cpp server output, including fields we do not model (`timings`).
LLAMA_CPP_COMPLETION = (
    b'{"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant",'
    b'"content":"Hi"}}],"created":1795237308,"model":"m","system_fingerprint":"b0-unknown",'
    b'"object":"chat.completion","usage":{"completion_tokens":20,"prompt_tokens":32,'
    b'"total_tokens":52,"prompt_tokens_details":{"cached_tokens":0}},"id":"chatcmpl-x",'
    b'"timings":{"prompt_n":32}}'
)
LLAMA_CPP_CHUNK = (
    b'{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"N"}}],'
    b'"created":1795237308,"id":"chatcmpl-s","model":"m","object":"chat.completion.chunk"}'
)
# The last chunk of a stream with `stream_options.include_usage`, as llama.cpp sends it.
LLAMA_CPP_USAGE_CHUNK = (
    b'{"choices":[],"created":1795237308,"id":"chatcmpl-s","model":"m",'
    b'"system_fingerprint":"b0-unknown","object":"chat.completion.chunk",'
    b'"usage":{"completion_tokens":20,"prompt_tokens":32,"total_tokens":52},'
    b'"timings":{"prompt_n":32,"predicted_n":20}}'
)


def test_decode_llama_cpp_completion() -> None:
    completion = msgspec.json.decode(LLAMA_CPP_COMPLETION, type=ChatCompletion)
    assert completion.id == "chatcmpl-x"
    assert completion.created == 1795237308
    assert completion.system_fingerprint == "b0-unknown"
    (choice,) = completion.choices
    assert choice.finish_reason == "length"
    assert choice.message.content == "Hi"
    assert choice.logprobs is None
    assert completion.usage is not None
    assert completion.usage.total_tokens == 52
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details is None


def test_re_encoded_completion_keeps_what_clients_read() -> None:
    completion = msgspec.json.decode(LLAMA_CPP_COMPLETION, type=ChatCompletion)
    encoded = json.loads(msgspec.json.encode(completion))
    expected = json.loads(LLAMA_CPP_COMPLETION)
    del expected["timings"]  # unknown fields are not kept
    # Keys OpenAI requires but llama.cpp leaves out are encoded as null (issue 10).
    expected["choices"][0]["message"]["refusal"] = None
    expected["choices"][0]["logprobs"] = None
    assert encoded == expected


def test_decode_llama_cpp_chunks() -> None:
    chunk = msgspec.json.decode(LLAMA_CPP_CHUNK, type=ChatCompletionChunk)
    (choice,) = chunk.choices
    assert choice.finish_reason is None
    assert choice.delta == Delta(content="N")
    assert chunk.usage is None
    assert json.loads(msgspec.json.encode(chunk)) == json.loads(LLAMA_CPP_CHUNK)

    last = msgspec.json.decode(LLAMA_CPP_USAGE_CHUNK, type=ChatCompletionChunk)
    assert last.choices == []
    assert last.usage == Usage(prompt_tokens=32, completion_tokens=20, total_tokens=52)


def test_object_tag_is_checked_when_present_and_optional_when_absent() -> None:
    chunk_body = {"object": "chat.completion.chunk", "id": "c", "created": 1, "model": "m"}
    with pytest.raises(msgspec.ValidationError, match=r"'chat.completion.chunk' - at `\$.object`"):
        msgspec.convert({**chunk_body, "choices": []}, ChatCompletion)
    lenient = json.loads(LLAMA_CPP_CHUNK)
    del lenient["object"]
    assert msgspec.convert(lenient, ChatCompletionChunk).id == "chatcmpl-s"


def test_decode_logprobs_and_tool_calls_with_engine_extras() -> None:
    raw = {
        "id": "chatcmpl-t",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "The user wants weather.",
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                            "id": "call_1",
                        }
                    ],
                },
                "logprobs": {
                    "content": [
                        {
                            "id": 9906,
                            "token": "Hi",
                            "bytes": [72, 105],
                            "logprob": -0.1,
                            "top_logprobs": [{"id": 9906, "token": "Hi", "logprob": -0.1}],
                        }
                    ]
                },
            }
        ],
    }
    completion = msgspec.convert(raw, ChatCompletion)
    message = completion.choices[0].message
    assert message.reasoning_content == "The user wants weather."
    assert message.tool_calls == [
        FunctionToolCall(
            id="call_1", function=FunctionCall(name="get_weather", arguments='{"city":"Oslo"}')
        )
    ]
    assert completion.choices[0].logprobs == ChoiceLogprobs(
        content=[
            TokenLogprob(
                token="Hi",
                logprob=-0.1,
                bytes=[72, 105],
                top_logprobs=[TopLogprob(token="Hi", logprob=-0.1)],
            )
        ]
    )


def test_built_completion_matches_the_openai_sdk() -> None:
    completion = ChatCompletion(
        id="chatcmpl-1",
        created=1795237308,
        model="smollm2",
        choices=[
            Choice(
                index=0,
                finish_reason="tool_calls",
                message=ChatCompletionMessage(
                    content=None,
                    tool_calls=[
                        FunctionToolCall(id="c1", function=FunctionCall(name="f", arguments="{}"))
                    ],
                ),
                logprobs=ChoiceLogprobs(
                    content=[TokenLogprob(token="a", logprob=-1.0, top_logprobs=[])]
                ),
            )
        ],
        usage=Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4),
    )
    encoded = json.loads(msgspec.json.encode(completion))
    # Constants and nullable-but-required keys are on the wire; unset options are not.
    assert encoded["object"] == "chat.completion"
    message = encoded["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"] is None
    assert message["refusal"] is None  # required by OpenAI's schema, nullable
    logprobs = encoded["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None
    assert logprobs["content"][0]["top_logprobs"] == []
    assert logprobs["content"][0]["bytes"] is None
    assert "system_fingerprint" not in encoded
    sdk = openai.types.chat.ChatCompletion.model_validate(encoded)
    assert sdk.choices[0].message.tool_calls is not None


def test_built_chunks_match_the_openai_sdk() -> None:
    chunks = [
        ChatCompletionChunk(
            id="chatcmpl-1",
            created=1,
            model="smollm2",
            choices=[ChunkChoice(index=0, delta=Delta(role="assistant"), finish_reason=None)],
        ),
        ChatCompletionChunk(
            id="chatcmpl-1",
            created=1,
            model="smollm2",
            choices=[
                ChunkChoice(
                    index=0,
                    delta=Delta(
                        tool_calls=[
                            ToolCallDelta(
                                index=0,
                                id="c1",
                                type="function",
                                function=FunctionCallDelta(name="f", arguments=""),
                            )
                        ]
                    ),
                    finish_reason=None,
                )
            ],
        ),
        ChatCompletionChunk(
            id="chatcmpl-1",
            created=1,
            model="smollm2",
            choices=[ChunkChoice(index=0, delta=Delta(), finish_reason="stop")],
        ),
        ChatCompletionChunk(
            id="chatcmpl-1",
            created=1,
            model="smollm2",
            choices=[],
            usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5),
        ),
    ]
    encoded = [json.loads(msgspec.json.encode(chunk)) for chunk in chunks]
    assert encoded[0] == {
        "object": "chat.completion.chunk",
        "id": "chatcmpl-1",
        "created": 1,
        "model": "smollm2",
        "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
    }
    assert encoded[2]["choices"][0]["delta"] == {}
    assert encoded[1]["choices"][0]["finish_reason"] is None
    for body in encoded:
        openai.types.chat.ChatCompletionChunk.model_validate(body)


def test_chunk_finish_reason_may_be_an_engine_value() -> None:
    chunk = ChatCompletionChunk(
        id="c",
        created=1,
        model="m",
        choices=[ChunkChoice(index=0, delta=Delta(content="partial"), finish_reason="abort")],
    )
    assert msgspec.json.decode(msgspec.json.encode(chunk), type=ChatCompletionChunk) == chunk


def test_model_list_from_llama_cpp_and_built() -> None:
    raw = (
        b'{"models":[{"name":"m","model":"m"}],"object":"list","data":[{"id":"m",'
        b'"object":"model","created":1795237308,"owned_by":"llamacpp","meta":{"n_ctx_train":8192}}]}'
    )
    models = msgspec.json.decode(raw, type=ModelList)
    assert models == ModelList(data=[Model(id="m", created=1795237308, owned_by="llamacpp")])
    encoded = json.loads(msgspec.json.encode(models))
    assert encoded == {
        "object": "list",
        "data": [{"object": "model", "id": "m", "created": 1795237308, "owned_by": "llamacpp"}],
    }
    openai.types.Model.model_validate(encoded["data"][0])


def test_required_nullable_keys_are_filled_when_an_engine_omits_them() -> None:
    # vLLM-style output: optional keys sent as null where OpenAI allows no null, required
    # nullable keys missing. Decoding then encoding yields what OpenAI's schema asks for.
    raw = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "x",
                    "tool_calls": None,
                    "annotations": None,
                    "function_call": None,
                    "reasoning_content": None,
                },
                "logprobs": {"content": [{"token": "x", "logprob": -0.5}]},
                "finish_reason": "stop",
                "stop_reason": None,
            }
        ],
    }
    encoded = json.loads(msgspec.json.encode(msgspec.convert(raw, ChatCompletion)))
    assert "system_fingerprint" not in encoded
    (choice,) = encoded["choices"]
    assert choice["message"] == {"role": "assistant", "content": "x", "refusal": None}
    assert choice["logprobs"] == {
        "content": [{"token": "x", "logprob": -0.5, "top_logprobs": [], "bytes": None}],
        "refusal": None,
    }
    chunk = msgspec.convert(
        {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {}}]},
        ChatCompletionChunk,
    )
    assert json.loads(msgspec.json.encode(chunk))["choices"][0]["finish_reason"] is None
