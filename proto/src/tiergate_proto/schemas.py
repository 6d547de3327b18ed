"""Generate ``proto/schemas/<Name>.json`` from the wire Structs; ``--check`` finds stale files."""

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from tiergate_proto.errors import ErrorEnvelope
from tiergate_proto.identity import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyRecord,
    ConsentRequest,
    ConsentResponse,
    KeyLookup,
    LogoutRequest,
    OtpStartRequest,
    OtpStartResponse,
    OtpVerifyRequest,
    RefreshRequest,
    SessionState,
    TokenResponse,
    UserInfo,
)
from tiergate_proto.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    Model,
    ModelList,
    Response,
    ResponseCreateRequest,
    StoredResponse,
    TextCompletion,
)
from tiergate_proto.openai.moderations import ModerationCreateResponse
from tiergate_proto.rag import DocumentPut, DocumentView, SearchRequest, SearchResponse
from tiergate_proto.records import (
    ChatExport,
    ChatPage,
    ChatRecord,
    ChatsErased,
    ChatStored,
    FeedbackPage,
    FeedbackRecord,
    FeedbackRequest,
    FeedbackStored,
)

PUBLIC_TYPES: tuple[type[msgspec.Struct], ...] = (
    ChatCompletionRequest,
    ChatCompletion,
    ChatCompletionChunk,
    ModelList,
    Model,
    CompletionRequest,
    TextCompletion,
    EmbeddingRequest,
    EmbeddingList,
    ResponseCreateRequest,
    Response,
    StoredResponse,
    ModerationCreateResponse,
    ErrorEnvelope,
    OtpStartRequest,
    OtpStartResponse,
    OtpVerifyRequest,
    RefreshRequest,
    LogoutRequest,
    TokenResponse,
    ConsentRequest,
    ConsentResponse,
    UserInfo,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyRecord,
    KeyLookup,
    SessionState,
    SearchRequest,
    SearchResponse,
    DocumentPut,
    DocumentView,
    FeedbackRequest,
    FeedbackStored,
    FeedbackRecord,
    FeedbackPage,
    ChatRecord,
    ChatStored,
    ChatPage,
    ChatExport,
    ChatsErased,
)
"""Top-level wire types that get one schema file each, named after the class."""

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"
"""``proto/schemas``, located from this file; meaningful in a source checkout only."""

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _clean_descriptions(node: Any) -> Any:
    """Dedent docstring-derived ``description`` values.

    msgspec 0.22 runs ``textwrap.dedent`` on the whole docstring, which is a no-op for
    the usual style (summary on the first line, body indented), so bodies would keep
    their source indentation. ``inspect.cleandoc`` is what ``help()`` shows.
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node


def render(tp: type[msgspec.Struct]) -> bytes:
    """The schema of ``tp`` as deterministic JSON: sorted keys, 2-space indent, final newline."""
    schema = {"$schema": _DIALECT, **_clean_descriptions(msgspec.json.schema(tp))}
    return (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def render_all() -> dict[str, bytes]:
    """File name (``ChatCompletion.json``, ...) to its expected bytes, for every public type."""
    return {f"{tp.__name__}.json": render(tp) for tp in PUBLIC_TYPES}


def diff(schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Problems with ``schema_dir`` against :func:`render_all`, one line each; empty if fresh."""
    expected = render_all()
    problems: list[str] = []
    for name, content in sorted(expected.items()):
        path = schema_dir / name
        if not path.exists():
            problems.append(f"missing: {path}")
        elif path.read_bytes() != content:
            problems.append(f"stale: {path}")
    problems.extend(
        f"not generated: {path}"
        for path in sorted(schema_dir.glob("*.json"))
        if path.name not in expected
    )
    return problems


def write(schema_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema into ``schema_dir``, remove ``*.json`` no longer generated.

    Returns the paths written or removed (only those that changed).
    """
    expected = render_all()
    schema_dir.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for name, content in sorted(expected.items()):
        path = schema_dir / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            changed.append(path)
    for path in sorted(schema_dir.glob("*.json")):
        if path.name not in expected:
            path.unlink()
            changed.append(path)
    return changed


def main(argv: list[str] | None = None, *, schema_dir: Path = SCHEMA_DIR) -> int:
    """``python -m tiergate_proto.schemas [--check]``; returns the process exit code.

    Without ``--check``, rewrites the schemas that changed and removes ``*.json`` that
    are no longer generated. With it, writes nothing, prints one line per stale,
    missing or leftover file to stderr and returns 1 if there is any.
    """
    parser = argparse.ArgumentParser(prog="python -m tiergate_proto.schemas", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed schemas are out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = diff(schema_dir)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python -m tiergate_proto.schemas", file=sys.stderr)
            return 1
        return 0
    for path in write(schema_dir):
        print(f"{'wrote' if path.exists() else 'removed'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
