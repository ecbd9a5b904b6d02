"""A throw-away method row for the method-table tests: reactnet's features with didb's per-token terms.

The method names are copied into a few module globals at import (model_file.METHODS, costs.METHOD_NAMES,
export.EXPORTABLE_METHODS, reference.config.METHODS), so registering a row for a test patches each of them.
"""
from __future__ import annotations

import dataclasses

from gsbsim.format import methods as table


def register_tokact(monkeypatch, reference: bool = False) -> table.Method:
    """Register the row "tokact" for one test (gsbsim's globals; with `reference`, the PyTorch side too)."""
    import gsbsim.format.model_file as mf
    import gsbsim.hw.costs as costs_mod

    row = dataclasses.replace(table.METHODS["reactnet"], name="tokact", token_terms=True,
                              summary="throw-away: act units with token terms, GSB attention")
    monkeypatch.setitem(table.METHODS, "tokact", row)
    names = tuple(table.METHODS)
    for module, attr in ((table, "METHOD_NAMES"), (mf, "METHODS"), (costs_mod, "METHOD_NAMES")):
        monkeypatch.setattr(module, attr, names)
    if reference:
        import reference.config as config
        import reference.export as export
        import reference.methods as ref_methods
        from reference.method_parts import PARTS, Parts

        monkeypatch.setattr(export, "EXPORTABLE_METHODS", names)
        monkeypatch.setattr(config, "METHODS", names + ("fp",))
        monkeypatch.setitem(PARTS, "tokact", Parts(post_activation=ref_methods._irprelu))
    return row
