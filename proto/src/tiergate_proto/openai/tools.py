"""Tool definitions and tool choice for chat requests, including the legacy ``functions`` API."""

from typing import Any, Literal

from tiergate_proto.openai.base import WireStruct


class FunctionDefinition(WireStruct, kw_only=True, frozen=True):
    """A callable function; ``parameters`` is a JSON Schema object, passed through untouched.

    The name is not checked against OpenAI's ``^[a-zA-Z0-9_-]{1,64}$``: self-hosted
    engines accept wider names (MCP tools use dots) and the gateway must not be stricter
    than the engine it forwards to.
    """

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="function"):
    """``{"type": "function", "function": {"name": ..., ...}}``."""

    function: FunctionDefinition


class TextFormat(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="text"):
    """Custom tool input is unconstrained text."""


class Grammar(WireStruct, kw_only=True, frozen=True):
    """A grammar constraining custom tool input; ``syntax`` is ``lark`` or ``regex`` today."""

    definition: str
    syntax: str


class GrammarFormat(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="grammar"):
    """Custom tool input must match ``grammar``."""

    grammar: Grammar


class CustomToolDefinition(WireStruct, kw_only=True, frozen=True):
    """A tool that takes free-form text input instead of JSON arguments."""

    name: str
    description: str | None = None
    format: TextFormat | GrammarFormat | None = None


class CustomTool(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="custom"):
    """``{"type": "custom", "custom": {"name": ..., ...}}``."""

    custom: CustomToolDefinition


Tool = FunctionTool | CustomTool
"""One entry of ``tools``, tagged on ``type``."""


class NamedTool(WireStruct, kw_only=True, frozen=True):
    """``{"name": ...}``: names one tool or (legacy ``function_call``) one function."""

    name: str


class FunctionToolChoice(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="function"):
    """Force a call of one function: ``{"type": "function", "function": {"name": ...}}``."""

    function: NamedTool


class CustomToolChoice(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="custom"):
    """Force a call of one custom tool: ``{"type": "custom", "custom": {"name": ...}}``."""

    custom: NamedTool


class AllowedTools(WireStruct, kw_only=True, frozen=True):
    """Restrict the model to a subset of ``tools``; entries are tool references, passed through."""

    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class AllowedToolsChoice(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="allowed_tools"
):
    """``{"type": "allowed_tools", "allowed_tools": {"mode": ..., "tools": [...]}}``."""

    allowed_tools: AllowedTools


ToolChoiceMode = Literal["none", "auto", "required"]
"""``none``: never call a tool; ``auto``: model decides; ``required``: must call one."""

ToolChoice = ToolChoiceMode | FunctionToolChoice | CustomToolChoice | AllowedToolsChoice
"""``tool_choice``: a mode string or an object tagged on ``type``."""

FunctionCallChoice = Literal["none", "auto"] | NamedTool
"""Legacy ``function_call`` request field: a mode string or ``{"name": ...}``."""
