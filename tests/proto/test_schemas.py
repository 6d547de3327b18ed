"""The committed JSON Schemas in proto/schemas are exactly what the Structs generate."""

import json
from pathlib import Path

import pytest

from tiergate_proto import schemas

NAMES = {
    "ChatCompletionRequest.json",
    "ChatCompletion.json",
    "ChatCompletionChunk.json",
    "ModelList.json",
    "Model.json",
    # legacy completions and embeddings
    "CompletionRequest.json",
    "TextCompletion.json",
    "EmbeddingRequest.json",
    "EmbeddingList.json",
    # Responses API
    "ResponseCreateRequest.json",
    "Response.json",
    "StoredResponse.json",
    "ErrorEnvelope.json",
    # identity (issue 4)
    "OtpStartRequest.json",
    "OtpStartResponse.json",
    "OtpVerifyRequest.json",
    "RefreshRequest.json",
    "LogoutRequest.json",
    "TokenResponse.json",
    "ConsentRequest.json",
    "ConsentResponse.json",
    "UserInfo.json",
    "ApiKeyCreate.json",
    "ApiKeyCreated.json",
    "ApiKeyList.json",
    "ApiKeyRecord.json",
    "KeyLookup.json",
    "SessionState.json",
    # retrieval (issue 6)
    "SearchRequest.json",
    "SearchResponse.json",
    "DocumentPut.json",
    "DocumentView.json",
    # moderation, feedback and consented history (issue 15)
    "ModerationCreateResponse.json",
    "FeedbackRequest.json",
    "FeedbackStored.json",
    "FeedbackRecord.json",
    "FeedbackPage.json",
    "ChatRecord.json",
    "ChatStored.json",
    "ChatPage.json",
    "ChatExport.json",
    "ChatsErased.json",
}


def test_committed_schemas_are_fresh() -> None:
    expected = schemas.render_all()
    assert set(expected) == NAMES
    committed = {path.name: path.read_bytes() for path in schemas.SCHEMA_DIR.glob("*.json")}
    stale = sorted(
        name
        for name in expected.keys() | committed.keys()
        if expected.get(name) != committed.get(name)
    )
    assert not stale, f"stale schemas {stale}: run `python -m tiergate_proto.schemas`"


def test_check_mode_passes_on_the_committed_schemas() -> None:
    assert schemas.main(["--check"]) == 0


def test_render_is_deterministic_json() -> None:
    first, second = schemas.render_all(), schemas.render_all()
    assert first == second
    for content in first.values():
        assert content.endswith(b"}\n")
        assert content.startswith(b'{\n  "$defs"')
        document = json.loads(content)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["$ref"].startswith("#/$defs/")


def test_descriptions_are_dedented() -> None:
    request = json.loads(schemas.render_all()["ChatCompletionRequest.json"])
    description = request["$defs"]["ChatCompletionRequest"]["description"]
    assert "\n    " not in description
    assert description.startswith("The body of ``POST /v1/chat/completions``.")


def test_diff_and_write_report_and_fix_problems(tmp_path: Path) -> None:
    (tmp_path / "Model.json").write_bytes(b"{}\n")
    (tmp_path / "Removed.json").write_bytes(b"{}\n")
    problems = schemas.diff(tmp_path)
    assert f"stale: {tmp_path / 'Model.json'}" in problems
    assert f"missing: {tmp_path / 'ChatCompletion.json'}" in problems
    assert f"not generated: {tmp_path / 'Removed.json'}" in problems
    assert len(problems) == len(NAMES) + 1

    schemas.write(tmp_path)
    assert schemas.diff(tmp_path) == []
    assert {path.name for path in tmp_path.iterdir()} == NAMES


def test_main_check_fails_until_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas.main(["--check"], schema_dir=tmp_path) == 1
    assert f"missing: {tmp_path / 'Model.json'}" in capsys.readouterr().err
    assert schemas.main([], schema_dir=tmp_path) == 0
    assert schemas.main(["--check"], schema_dir=tmp_path) == 0
