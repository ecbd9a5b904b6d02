"""A throw-away method row for the method-table tests: reactnet's features with didb's per-token terms.

Every module reads the method names from the table when it uses them (gsbsim.format.methods.MethodNames),
so the row is one dictionary entry; the PyTorch side also needs its module registration.
"""
from __future__ import annotations

import dataclasses

from gsbsim.format import methods as table


def register_tokact(monkeypatch, reference: bool = False) -> table.Method:
    """Register the row "tokact" for one test (gsbsim's globals; with `reference`, the PyTorch side too)."""
    row = dataclasses.replace(table.METHODS["reactnet"], name="tokact", token_terms=True,
                              summary="throw-away: act units with token terms, GSB attention")
    monkeypatch.setitem(table.METHODS, "tokact", row)
    if reference:
        import reference.methods as ref_methods
        from reference.method_parts import PARTS, Parts

        monkeypatch.setitem(PARTS, "tokact", Parts(post_activation=ref_methods._irprelu))
    return row
