"""benchmarks/accuracy.py end to end on a tiny budget: train, export, simulate, table."""
from __future__ import annotations

import json

import pytest

from benchmarks import accuracy


def test_accuracy_table_smoke(tmp_path, capsys):
    out = tmp_path / "run"
    rc = accuracy.main(["--seeds", "1", "--epochs", "1", "--limit-train", "64", "--methods", "sign,gsb-batch",
                        "--out", str(out), "--no-write"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"sign", "gsb-batch"}
    for row in results.values():
        (r,) = row
        # integer columns exist (gsb-batch through the per-image statistic) and are percentages
        assert 0 <= r["float"] <= 100 and 0 <= r["int"] <= 100 and 0 <= r["agreement"] <= 100
        assert r["bops"] > 0 and r["model_bytes"] > 0 and 0 < r["ii"] <= r["latency"]
    text = capsys.readouterr().out
    assert "| sign |" in text and "| gsb-batch |" in text
    # --reuse trains nothing again: every stage is reported as reused
    rc = accuracy.main(["--seeds", "1", "--epochs", "1", "--methods", "sign", "--out", str(out), "--reuse",
                        "--train-only"])
    assert rc == 0
    assert capsys.readouterr().out.count("reusing") == 3   # teacher, stage 1, stage 2


def test_accuracy_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--methods", "nope"])
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--reuse"])
    assert accuracy.main(["--preset", "nope", "--no-write"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_accuracy_missing_dataset_is_one_error_line(tmp_path, capsys):
    rc = accuracy.main(["--preset", "cifar", "--data", "cifar100", "--data-path", str(tmp_path / "absent"),
                        "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-write"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--data-path" in err and "no such file" in err and "exited with 2" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "results.json").exists()
