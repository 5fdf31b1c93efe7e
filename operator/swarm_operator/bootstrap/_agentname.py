"""Which agent a command is: Claude Code only by its exact name, and names that imitate it.

The operator treats ``spec.agent.command`` as Claude Code — installs its pinned package, writes its
configuration and onboarding, points it at the MCP gateway — only when the program's name is
exactly ``claude``, compared code point by code point with no normalisation. A name that merely
*looks* like it (Cyrillic ``с`` for ``c``, a fullwidth or mathematical letter, a zero-width
character, ``I`` for ``l``) is a different file on the sandbox's PATH: it is allowed and run as the
generic command it is, never given Claude Code's treatment, and :func:`imitated` names what it
imitates so the operator can report the spoofing attempt.
"""

from __future__ import annotations

import unicodedata
from typing import Final

#: The one program name the operator treats as Claude Code.
CLAUDE_CODE_COMMAND: Final = "claude"
#: Names whose look-alikes are reported: the commands the operator treats specially.
_GUARDED: Final = (CLAUDE_CODE_COMMAND,)

#: Characters drawn like a letter of a guarded name, by that letter: Unicode's confusables.txt
#: (UTS #39 "Unicode Security Mechanisms", section 4: the prototype each character is confusable
#: with), every single code point whose prototype is the letter, as confusable-homoglyphs 3.3.1
#: ships the table (``confusables.json``), less those NFKC already turns into the letter (they are
#: caught by normalising first), plus the Hebrew/Arabic/NKo forms the table wraps in LRM marks.
_CONFUSABLE_WITH: Final = {
    "c": "\u1d04\u03f2\u2ca5\u0441\uabaf\U0001043d",
    "l": (
        "|\u2223\u23fd\uffe81\u06f1\U00010320\U0001d7cf\U0001d7d9\U0001d7e3\U0001d7ed\U0001d7f7"
        "\U0001fbf1I\uff29\u2160\u2110\u2111\U0001d408\U0001d43c\U0001d470\U0001d4d8\U0001d540"
        "\U0001d574\U0001d5a8\U0001d5dc\U0001d610\U0001d644\U0001d678\u0196\u01c0\u0399\U0001d6b0"
        "\U0001d6ea\U0001d724\U0001d75e\U0001d798\u2c92\u0406\u04c0\u2d4f\u16c1\ua4f2\U00016f28"
        "\U0001028a\U00010309\u05c0\u0661\U0001e8c7\u05d5\u05df\u0627\U0001ee00\U0001ee80\ufe8e"
        "\ufe8d\u07ca"
    ),
    "a": "\u237a\u0251\u03b1\U0001d6c2\U0001d6fc\U0001d736\U0001d770\U0001d7aa\u0430",
    "u": "\ua79f\u1d1c\uab4e\uab52\u028b\u03c5\U0001d6d6\U0001d710\U0001d74a\U0001d784\U0001d7be\u057d\U000104f6\U000118d8",
    "d": "\u0501\u13e7\u146f\ua4d2",
    "e": "\u212e\uab32\u0435\u04bd",
}
_PROTOTYPE: Final = {char: letter for letter, chars in _CONFUSABLE_WITH.items() for char in chars}
#: Drawn as nothing: format characters (zero-width joiners and spaces, bidi controls, soft hyphen),
#: controls and separators. Combining marks are drawn (an accent shows), so they are kept.
_UNSEEN: Final = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})


def program(command: str) -> str:
    """The program's own name: the last component of a path, the command itself otherwise."""
    return command.rsplit("/", 1)[-1]


def is_claude_code(command: str) -> bool:
    """Whether the operator treats ``command`` as Claude Code: its name is exactly ``claude``."""
    return program(command) == CLAUDE_CODE_COMMAND


def skeleton(name: str) -> str:
    """What ``name`` looks like: unseen characters dropped, each confusable character replaced by
    the letter it is drawn like, every other one NFKC-normalised (UTS #39's skeleton, for the
    guarded letters)."""
    return "".join(_look(c) for c in name if unicodedata.category(c) not in _UNSEEN)


def _look(char: str) -> str:
    # The table first: NFKC maps some confusables elsewhere (Greek lunate sigma to final sigma).
    if char in _PROTOTYPE:
        return _PROTOTYPE[char]
    shown = unicodedata.normalize("NFKC", char)
    return "".join(_PROTOTYPE.get(c, c) for c in shown if unicodedata.category(c) not in _UNSEEN)


def imitated(command: str) -> str | None:
    """The guarded name ``command``'s program imitates without being it, else None."""
    name = program(command)
    if name in _GUARDED:
        return None
    look = skeleton(name)
    return next((guarded for guarded in _GUARDED if look == guarded), None)
