"""``{name}`` placeholders in agent commands: the names there are and how they are filled."""

from __future__ import annotations

import re

PLACEHOLDERS = frozenset(
    {
        "mission_id",
        "run_id",
        "step_id",
        "step_name",
        "agent_id",
        "input_artifact",
        "output_artifact",
        "feedback_artifact",
    }
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def placeholders_in(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def expand(template: str, values: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders; no format-string features beyond that."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
