"""The wheel carries the HLS kernel library, and an installed gsbsim finds it inside the package (so
``gsbsim hls`` and ``gsbsim csim`` work outside a checkout). Tier ``slow``: it builds a wheel."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_kernel_library_and_finds_it_when_installed(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("gsbsim-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    headers = sorted(p.name for p in (ROOT / "hls" / "include" / "gsb").glob("*.hpp"))
    assert headers and all(f"gsbsim/hlsgen/library/include/gsb/{h}" in names for h in headers)
    assert "gsbsim/hlsgen/library/tb/tb_util.hpp" in names
    templates = sorted(p.name for p in (ROOT / "gsbsim" / "hlsgen" / "templates").iterdir())
    assert templates and all(f"gsbsim/hlsgen/templates/{t}" in names for t in templates)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    code = "import gsbsim.hlsgen.toolchain as t; print(t.library_include_dir())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         check=True, capture_output=True, text=True).stdout.strip()
    assert Path(out) == site / "gsbsim" / "hlsgen" / "library" / "include"
    assert (Path(out) / "gsb" / "mvau.hpp").is_file()
    # the project templates are read from the installed package, not from a checkout
    code = ("import gsbsim.hlsgen.templating as t; import importlib.resources as r; "
            "print(r.files('gsbsim.hlsgen') / 'templates'); print(len(t.template_text('tb.cpp')))")
    where, size = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                                 check=True, capture_output=True, text=True).stdout.split()
    assert Path(where) == site / "gsbsim" / "hlsgen" / "templates"
    assert int(size) == len((ROOT / "gsbsim" / "hlsgen" / "templates" / "tb.cpp").read_text(encoding="utf-8"))
