"""The docs say what is true: every reason has a troubleshooting entry, every path named exists."""

from __future__ import annotations

import re
from pathlib import Path

from swarm_operator.conditions import Reason

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_every_reason_has_a_troubleshooting_entry_and_no_entry_is_stale() -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    documented = set(re.findall(r"^### (\w+)$", text, flags=re.M))
    reasons = {r.value for r in Reason}
    assert reasons - documented == set(), "reasons without a section in docs/troubleshooting.md"
    assert documented - reasons == set(), "sections for reasons the operator no longer has"


def test_every_path_the_architecture_names_exists() -> None:
    text = (DOCS / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|md|toml|yaml)|[\w-]+/)`", text))
    assert named, "the architecture names no paths: the pattern is broken"
    base = ROOT / "operator" / "swarm_operator"
    missing = [
        p
        for p in named
        if not (
            (base / p).exists()
            or (ROOT / p).exists()
            or (ROOT / "operator" / p).exists()
            or (DOCS / p).exists()
        )
    ]
    assert missing == []
