"""Generate `docs/settings.md`, the settings reference, from the services' settings Structs.

`python -m tiergate_runtime.settings_doc` rewrites the file; `--check` writes nothing and
exits 1 when it is stale; `--undocumented` lists the settings fields that have no docstring.

One section per service, one Markdown table per TOML table (`[server]`, `[backends.<name>]`,
`[backends.<name>.wake]`, `[[models]]`, ...; see `tiergate_runtime.settings_tables`): each
key's type with its bounds, its real default and its docstring ("—" where it has none); the
class docstring introduces its table. The services' settings modules are imported by name, so
that this module, which the services depend on, does not depend on them: it runs in the
workspace's environment.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import NamedTuple

import msgspec

from tiergate_runtime.settings_tables import Table, code, tables

__all__ = ["DOC_PATH", "SERVICES", "Service", "diff", "main", "render", "undocumented"]


class Service(NamedTuple):
    """A service whose settings the reference describes."""

    name: str
    settings: str
    """`module:Class` of its settings Struct; the module defines `ENV_PREFIX`."""
    config: str
    """The shipped config file, relative to the repository root."""


SERVICES: tuple[Service, ...] = (
    Service("gateway", "tiergate_gateway.settings:GatewaySettings", "config/gateway.toml"),
    Service("auth", "tiergate_auth.settings:AuthSettings", "config/auth.toml"),
    Service("rag", "tiergate_rag.settings:RagSettings", "config/rag.toml"),
    Service("cpu-llm", "tiergate_cpu_llm.settings:CpuLlmSettings", "config/cpu-llm.toml"),
    Service("gpu-llm", "tiergate_gpu_llm.settings:GpuLlmSettings", "config/gpu-llm.toml"),
)

DOC_PATH = Path(__file__).resolve().parents[4] / "docs" / "settings.md"
"""`docs/settings.md`, located from this file; meaningful in a source checkout only."""

COMMAND = "make settings-doc"
"""What regenerates the file (`python -m tiergate_runtime.settings_doc`)."""

MISSING = "—"
"""The description of a field without a docstring."""


def cell(text: str) -> str:
    """`text` as one Markdown table cell: one line, paragraphs kept apart, pipes escaped."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    return "<br><br>".join(p for p in paragraphs if p).replace("|", "\\|")


def settings_type(service: Service) -> tuple[type[msgspec.Struct], str]:
    """The service's settings Struct and its environment prefix."""
    module_name, _, class_name = service.settings.partition(":")
    module = importlib.import_module(module_name)
    struct: type[msgspec.Struct] = getattr(module, class_name)
    return struct, str(module.ENV_PREFIX)


def service_tables(service: Service) -> list[Table]:
    """Every table of the service's settings, the top level first."""
    struct, _ = settings_type(service)
    try:
        instance: msgspec.Struct | None = struct()
    except TypeError:  # a required top-level field: show the class defaults
        instance = None
    return list(tables(struct, instance))


# --- the document -------------------------------------------------------------------------


_HEAD = f"""\
<!-- Generated from the settings Structs by `python -m tiergate_runtime.settings_doc`
     (`{COMMAND}`); edit the Structs' docstrings, not this file. -->

# Settings reference

Every key each service reads from its TOML file and its environment, generated from the
settings Structs: types and bounds as validated at startup, the defaults the service uses when
a key is absent, and each field's docstring ({MISSING} where it has none yet). The shipped
files in `config/` show a working setup with comments; a bad value stops the service with a
message naming the key.

Any key can be set from the environment: `<PREFIX><KEY>`, nested keys joined by `__`
(`server.port` of the gateway is `TIERGATE_GATEWAY_SERVER__PORT`). A value starting with `[`
or `{{` is JSON (a whole list or table); an empty value unsets an optional key. `REDIS_URL`
sets `store.url` where the service has a store and its own variable does not. A key shown as
unset has no value unless given.

Secrets can arrive as files instead: with `<PREFIX>SECRETS_DIR` set (`/run/secrets`), each
file there named like a variable (`TIERGATE_AUTH_PEPPER`) gives that variable its content, one
trailing newline dropped; a variable set in the environment wins over its file.
"""


def _container(table: Table) -> str:
    """`backends` for `[backends.<name>]`, `models` for `[[models]]`: the key that holds them."""
    return table.path.removesuffix(".<name>")


def _render_table(table: Table) -> list[str]:
    lines: list[str] = []
    if table.header:
        lines += [f"### {code(table.header)}", ""]
    intro = inspect.cleandoc(table.struct.__doc__ or "")
    if intro and table.header:
        lines += [intro, ""]
    for placeholder, matches in table.names:
        lines += [f"{code(placeholder)}: any {matches}.", ""]
    if table.default_toml is not None:
        lines += [
            f"The default, when neither the file nor the environment sets "
            f"{code(_container(table))}:",
            "",
            "```toml",
        ]
        lines += [table.default_toml, "```", ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for key in table.keys:
        doc = cell(key.doc) if key.doc else MISSING
        lines.append(f"| {code(key.name)} | {cell(key.type)} | {cell(key.default)} | {doc} |")
    lines.append("")
    return lines


def render() -> str:
    """The whole reference, as `docs/settings.md` should read."""
    lines = [_HEAD]
    lines += [
        "| service | config file | file variable | override prefix |",
        "|---|---|---|---|",
    ]
    for service in SERVICES:
        _, prefix = settings_type(service)
        lines.append(
            f"| [{service.name}](#{service.name}) | {code(service.config)} | "
            f"{code(prefix + 'CONFIG')} | {code(prefix)} |"
        )
    lines.append("")
    for service in SERVICES:
        struct, prefix = settings_type(service)
        lines += [f"## {service.name}", ""]
        lines += [
            f"{code(struct.__name__)} in {code(struct.__module__)}; file: "
            f"{code(prefix + 'CONFIG')} (shipped: {code(service.config)}); "
            f"environment: {code(prefix + '<KEY>')}.",
            "",
        ]
        intro = inspect.cleandoc(struct.__doc__ or "")
        if intro:
            lines += [intro, ""]
        for table in service_tables(service):
            lines += _render_table(table)
    return "\n".join(lines).rstrip("\n") + "\n"


def undocumented() -> list[str]:
    """`module.Class.field` for every settings field without a docstring, each once (a Struct
    used by several services, like ServerSettings, is listed once), in document order."""
    found: dict[str, None] = {}
    for service in SERVICES:
        for table in service_tables(service):
            where = f"{table.struct.__module__}.{table.struct.__qualname__}"
            for key in table.keys:
                if not key.doc:
                    found[f"{where}.{key.name}"] = None
    return list(found)


def diff(path: Path = DOC_PATH) -> list[str]:
    """What is wrong with `path` against :func:`render`, one line each; empty if current."""
    if not path.exists():
        return [f"missing: {path}"]
    if path.read_text(encoding="utf-8") != render():
        return [f"stale: {path}"]
    return []


def main(argv: list[str] | None = None, *, path: Path = DOC_PATH) -> int:
    """`python -m tiergate_runtime.settings_doc [--check | --undocumented]`; the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tiergate_runtime.settings_doc", description=__doc__.splitlines()[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    group.add_argument(
        "--undocumented", action="store_true", help="list the settings without a docstring"
    )
    args = parser.parse_args(argv)
    if args.undocumented:
        for line in undocumented():
            print(line)
        return 0
    if args.check:
        problems = diff(path)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    content = render()
    if not path.exists() or path.read_text(encoding="utf-8") != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
