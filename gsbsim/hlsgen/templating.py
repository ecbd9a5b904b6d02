"""The generated project's fixed files as real templates (gsbsim/hlsgen/templates/, package data), filled here.

A template is the file as it will be written, with ``@name@`` where a value goes (hls4ml's habit of
C++ templates beside the writer, instead of C++ inside Python strings). A placeholder alone on its
line takes a multi-line value: the value's own final newline is dropped, the line's newline stays,
so the template shows one line per inserted block. Every placeholder must get a value and every
value a placeholder: a misspelt name fails at generation, never as C++ with a hole in it.
"""
from __future__ import annotations

import functools
import re
from importlib import resources

__all__ = ["render", "template_text", "TEMPLATE_DIR"]

TEMPLATE_DIR = "templates"
_PLACEHOLDER = re.compile(r"@([a-z_]+)@")


@functools.lru_cache(maxsize=None)
def template_text(name: str) -> str:
    """The template ``name`` (e.g. ``tb.cpp``) as shipped in the package."""
    return (resources.files("gsbsim.hlsgen") / TEMPLATE_DIR / name).read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """Template ``name`` with every ``@key@`` replaced by ``values[key]`` (one pass: values are not rescanned)."""
    text = template_text(name)
    wanted = set(_PLACEHOLDER.findall(text))
    if wanted != set(values):
        raise KeyError(f"template {name}: placeholders {sorted(wanted)}, values given for {sorted(values)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)].removesuffix("\n") if _alone(m) else values[m.group(1)],
                            text)


def _alone(m: re.Match) -> bool:
    """The placeholder fills its whole line."""
    s, a, b = m.string, m.start(), m.end()
    return (a == 0 or s[a - 1] == "\n") and (b == len(s) or s[b] == "\n")
