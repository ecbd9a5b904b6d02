"""The generated project's fixed files are templates (gsbsim/hlsgen/templates) filled by
gsbsim/hlsgen/templating.py: every placeholder gets its value, nothing else changes."""
from __future__ import annotations

import re

import pytest

from gsbsim.hlsgen import templating
from gsbsim.hlsgen.templating import render, template_text

TEMPLATES = ("top.h", "top.cpp", "tb.cpp", "Makefile", "vitis.tcl")


@pytest.fixture()
def fake_template(monkeypatch):
    """render() on a template text of the test's choosing."""
    def use(text: str):
        monkeypatch.setattr(templating, "template_text", lambda name: text)
    return use


def test_a_placeholder_inside_a_line_takes_the_value_as_it_is(fake_template):
    fake_template("set_part {@part@}\nclock @period@ ns\n")
    assert render("x", part="xc7", period="5.000") == "set_part {xc7}\nclock 5.000 ns\n"


def test_a_placeholder_alone_on_its_line_takes_lines_without_a_doubled_newline(fake_template):
    fake_template("{\n@rows@\n}\n")
    assert render("x", rows="    a,\n    b\n") == "{\n    a,\n    b\n}\n"
    assert render("x", rows="    a,\n    b") == "{\n    a,\n    b\n}\n"


def test_values_are_not_rescanned_for_placeholders(fake_template):
    fake_template("@a@ @b@\n")
    assert render("x", a="@b@", b="1") == "@b@ 1\n"


def test_a_missing_or_misspelt_value_fails_instead_of_leaving_a_hole(fake_template):
    fake_template("AP_TYPES ?= @ap_types@\n")
    with pytest.raises(KeyError, match="ap_types"):
        render("x")
    with pytest.raises(KeyError, match="ap_type"):
        render("x", ap_types="/x", ap_type="/y")


@pytest.mark.parametrize("name", TEMPLATES)
def test_shipped_templates_have_only_known_placeholders(name):
    """Each template's placeholders are exactly what project.py fills (no stray @word@ of C++ or make)."""
    wanted = {"top.h": {"image_t"}, "tb.cpp": {"tensors", "layers", "image_t", "image_feed"}, "Makefile": {"ap_types"},
              "vitis.tcl": {"top", "part", "period"},
              "top.cpp": {"model", "sha", "includes", "image_t", "x_embed", "x_embed_trace", "x_head",
                          "embed_streams", "embed_procs", "blocks", "streams", "procs", "head_streams",
                          "head_procs"}}[name]
    assert set(re.findall(r"@([a-z_]+)@", template_text(name))) == wanted
