"""JSON Schemas (draft 2020-12) of what ``digits COMMAND --json`` prints; ``docs/json.md``
explains every field. ``common.json`` holds the definitions the others refer to."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

COMMANDS = ("train", "predict", "score", "tune", "tutorial")


def load_schema(name: str) -> dict[str, Any]:
    """The schema of ``digits NAME --json`` (or ``common``), as a dict."""
    if name not in (*COMMANDS, "common"):
        raise KeyError(f"no schema {name!r}; known: {', '.join(COMMANDS)}, common")
    return json.loads(resources.files(__package__).joinpath(f"{name}.json").read_text("utf-8"))


def validator(name: str) -> Any:
    """A ``jsonschema`` validator for ``digits NAME --json`` that resolves the shared
    definitions locally (``jsonschema`` is a test dependency, not a runtime one)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in (load_schema(n) for n in (*COMMANDS, "common")))
    return Draft202012Validator(load_schema(name), registry=registry)
