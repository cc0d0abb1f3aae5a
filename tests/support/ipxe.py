"""How iPXE reads a script line, for tests of what bootpack writes into iPXE scripts."""

from __future__ import annotations


def _expand(word: str) -> str:
    """iPXE's expand_settings with every setting unset: the first `}` after a `${` closes the
    last `${` before it, the whole is replaced by nothing, and the scan starts again."""
    while True:
        start = -1
        for i in range(len(word)):
            if word.startswith("${", i):
                start = i
            if start >= 0 and word[i] == "}":
                word = word[:start] + word[i + 1:]
                break
        else:
            return word


def ipxe_commands(line: str) -> list[list[str]]:
    """A script line as iPXE runs it (src/core/exec.c): split at blanks, commands ended by a raw
    word ||, && or ;, the rest dropped from a raw word starting with #; then each word
    expanded (_expand)."""
    commands: list[list[str]] = [[]]
    for word in line.split():
        if word.startswith("#"):
            break
        if word in ("||", "&&", ";"):
            commands.append([])
            continue
        commands[-1].append(_expand(word))
    return [c for c in commands if c]
