"""``{name}`` placeholders in agent commands: the names there are and how they are filled."""

from __future__ import annotations

import re
from collections.abc import Mapping

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


def expand(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` for each name in ``values``; every other brace stays as written.

    A plain substitution, not ``str.format``: no attribute access or format
    specs, and a value is never expanded again.
    """
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
