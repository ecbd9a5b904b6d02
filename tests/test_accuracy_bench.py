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
    # --tabulate trains nothing and reuses the evaluations: two seeds asked, one finished, gsb-g2 never trained
    cached = out / "seed0" / "sign" / "stage2" / accuracy.EVAL_FILE
    stamp = cached.stat().st_mtime_ns
    rc = accuracy.main(["--seeds", "2", "--methods", "sign,gsb-batch,gsb-g2", "--out", str(out), "--tabulate",
                        "--no-write"])
    assert rc == 0 and cached.stat().st_mtime_ns == stamp
    text = capsys.readouterr().out
    assert "**Partial" in text and "| sign | 1 |" in text and "| gsb-batch | 1 |" in text and "gsb-g2 |" not in text
    assert "reusing" not in text and "[stage" not in text
    # what trained the checkpoints: the first run (the --reuse --train-only run trained nothing)
    (first,) = accuracy.read_train_record(out)
    assert "--methods sign,gsb-batch" in first["command"] and "Trained beforehand by `" + first["command"] in text
    # a row another run is training (its folder locked) is left to that run, not failed on
    from gsbsim.outputs import folder_lock
    with folder_lock(out / "seed0" / "gsb-g2"):
        rc = accuracy.main(["--seeds", "1", "--epochs", "1", "--methods", "gsb-g2", "--out", str(out), "--reuse",
                            "--train-only"])
    assert rc == 0 and "skipping" in capsys.readouterr().out
    assert not (out / "seed0" / "gsb-g2").exists()
    # --reuse continues an interrupted stage (last.pt, no summary.json) with the trainer's --resume
    (out / "seed0" / "sign" / "stage2" / "summary.json").unlink()
    rc = accuracy.main(["--seeds", "1", "--epochs", "1", "--limit-train", "64", "--methods", "sign", "--out", str(out),
                        "--reuse", "--train-only"])
    assert rc == 0 and "resuming" in capsys.readouterr().out
    assert (out / "seed0" / "sign" / "stage2" / "summary.json").is_file()
    assert [r["command"].split("--methods ")[1].split()[0] for r in accuracy.read_train_record(out)] == ["sign,gsb-batch", "sign"]
    # --int-aware-epochs with --reuse continues the finished float stage 2 on the grid (the trainer's
    # --resume); its section is its own, and its float column is the float model's, off the grid
    rc = accuracy.main(["--seeds", "1", "--epochs", "1", "--limit-train", "64", "--methods", "sign", "--out", str(out),
                        "--reuse", "--int-aware-epochs", "1", "--no-write"])
    text = capsys.readouterr().out
    assert rc == 0 and "resuming" in text and "## Accuracy (int-aware 1)" in text and "then 1 on the integer" in text
    stage2 = out / "seed0" / "sign" / "stage2"
    assert json.loads((stage2 / "summary.json").read_text())["int_aware_epochs"] == 1
    assert len(accuracy.read_train_record(out)) == 3 and "Trained beforehand by `" in text   # the two runs before it
    (r,) = json.loads((out / "results.json").read_text())["sign"]
    from reference.bit_taps import float_logits
    from reference.checkpoint import load_model
    images, labels = accuracy._test_arrays(accuracy.Setup(), 0)
    model, _ = load_model(stage2 / "best.pt")
    assert r["float"] == pytest.approx(100 * (float_logits(model.eval(), images).argmax(-1) == labels).mean())
    # --first-seed: seed 1 alone, which never ran
    assert accuracy.main(["--first-seed", "1", "--seeds", "1", "--out", str(out), "--tabulate", "--no-write"]) == 2


def test_accuracy_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--methods", "nope"])
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--reuse"])
    assert accuracy.main(["--preset", "nope", "--no-write"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--tabulate"])                                  # nothing to table
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--tabulate", "--train-only", "--out", "x"])   # contradictory
    assert accuracy.parse_args(["--methods", "gsb-g2,gsb-g4"]).methods == ["gsb-g2", "gsb-g4"]
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--first-seed", "-1"])


def test_accuracy_tabulate_nothing_finished(tmp_path, capsys):
    assert accuracy.main(["--out", str(tmp_path), "--tabulate", "--no-write"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished stage 2" in err and str(tmp_path) in err


def test_rows_and_exportable(monkeypatch):
    assert [accuracy.row_method(r) for r in ("gsb-g2", "gsb-g4", "gsb-batch", "didb")] == ["gsb", "gsb", "gsb", "didb"]
    assert all(accuracy.exportable(r) for r in ("gsb", "gsb-batch", "gsb-g4", "bit", "sign", "reactnet", "didb"))
    assert not accuracy.exportable("fp")
    # asked of the exporter at call time: a method it drops loses its integer columns
    monkeypatch.setattr(accuracy.ex, "EXPORTABLE_METHODS", ("gsb",))
    assert accuracy.exportable("gsb-g2") and not accuracy.exportable("didb")


def test_sections_and_plots(tmp_path):
    digits, mnist = accuracy.Setup("digits"), accuracy.Setup("mnist")
    assert digits.section() == "## Accuracy" and digits.plot_path().name == "accuracy.png"
    assert mnist.section() == "## Accuracy (mnist)" and mnist.plot_path().name == "accuracy-mnist.png"
    assert accuracy.Setup("digits", "mnist").section() == "## Accuracy (digits on mnist)"
    grid = accuracy.Setup("mnist", int_aware_epochs=3)
    assert grid.section() == "## Accuracy (mnist, int-aware 3)" and grid.plot_path().name == "accuracy-mnist-int-aware3.png"
    # writing the mnist section leaves the digits one (and any other) alone, and replaces itself
    from benchmarks.kernels import write_section
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Accuracy\n\ndigits table\n\n## Kernels\n\nk\n")
    write_section("## Accuracy (mnist)\n\nfirst\n", mnist.section(), path)
    write_section("## Accuracy (mnist)\n\nsecond\n", mnist.section(), path)
    text = path.read_text()
    assert "digits table" in text and "## Kernels\n\nk" in text and "second" in text and "first" not in text


def _header(tf: dict, agreement=1.0, flipped=0, frac_bits=17) -> dict:
    return {"frac_bits": frac_bits, "verification": {
        "data": "val", "images": 200, "agreement": agreement, "constant_bits_flipped": flipped,
        "bits_teacher_forced": tf, "bits_end_to_end": {k: v - 0.01 for k, v in tf.items()}}}


def test_verification_columns():
    cols = accuracy.verification_columns(_header({"blocks.0.ln1.bits": 1.0, "blocks.1.a.planes": 0.99995,
                                                  "blocks.2.a.planes": 0.99995}, agreement=0.995, flipped=2))
    # the first of the tied lowest binarizers, as reference.verify names it
    assert cols["worst_tf_layer"] == "blocks.1.a.planes" and cols["worst_tf"] == pytest.approx(99.995)
    assert cols["export_agreement"] == pytest.approx(99.5) and cols["worst_e2e"] == pytest.approx(98.995)
    assert cols["constants_exact"] is False and cols["frac_bits"] == 17 and cols["export_images"] == 200


def _cell(seed, tf=1.0, agreement=100.0, flipped=0, f=17, layer="blocks.0.ln1.bits"):
    cols = accuracy.verification_columns(_header({layer: tf}, flipped=flipped, frac_bits=f))
    return {"seed": seed, "float": 90.0 + seed, "int": 90.0 + seed, "agreement": agreement, **cols,
            "bops": 10, "ops": 2.0, "model_bytes": 3, "ii": 4, "latency": 5}


def test_accuracy_line_and_goal():
    good, low_bits, flip = _cell(0), _cell(1, tf=0.9998, f=16, layer="blocks.3.v.planes"), _cell(2, flipped=1)
    assert accuracy.meets_goal(good) and not accuracy.meets_goal(low_bits) and not accuracy.meets_goal(flip)
    assert not accuracy.meets_goal({**good, "agreement": 99.8})           # test agreement counts too
    cells = [c.strip() for c in accuracy.accuracy_line("gsb", [good, low_bits, flip]).strip("|").split("|")]
    assert cells[:5] == ["gsb", "3", "91.00 ± 1.00", "91.00 ± 1.00", "100.00 ± 0.00"]
    assert cells[5:] == ["100.00", "99.9800 (blocks.3.v.planes)", "2/3", "17/16/17", "1/3"]
    fp = [c.strip() for c in accuracy.accuracy_line("fp", [{"seed": 0, "float": 80.0}]).strip("|").split("|")]
    assert fp == ["fp", "1", "80.00"] + ["n/a"] * 7
    assert accuracy.cost_line("gsb", [good]) == "| gsb | 10 | 2 | 3 | 4 | 5 |"


def test_accuracy_missing_dataset_is_one_error_line(tmp_path, capsys):
    rc = accuracy.main(["--preset", "cifar", "--data", "cifar100", "--data-path", str(tmp_path / "absent"),
                        "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-write"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--data-path" in err and "no such file" in err and "exited with 2" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "results.json").exists()


def test_float_control_asks_the_trainer_for_its_control_and_reuses_only_control_runs(tmp_path):
    """--float-control passes reference.train's --int-aware-control with the grid epochs (not for a
    float row), and --reuse / --tabulate count a stage 2 as done only when its summary says the
    same epochs ran the same way (on the grid, or off it as the control)."""
    assert accuracy._stage2_args("gsb", 3, True) == ["--method", "gsb", "--int-aware-epochs", "3", "--int-aware-control"]
    assert accuracy._stage2_args("gsb", 3) == ["--method", "gsb", "--int-aware-epochs", "3"]
    assert accuracy._stage2_args("fp", accuracy.grid_epochs("fp", 3), True) == ["--method", "fp"]
    stage = tmp_path / "stage2"
    stage.mkdir()
    (stage / "best.pt").write_bytes(b"")

    def summary(**kw):
        (stage / "summary.json").write_text(json.dumps(kw))
    summary(int_aware_epochs=3, int_aware_control=True)
    assert accuracy._done(stage, 3, True) and not accuracy._done(stage, 3, False) and not accuracy._done(stage, 2, True)
    summary(int_aware_epochs=3)                          # a trainer from before the option: on the grid
    assert accuracy._done(stage, 3, False) and not accuracy._done(stage, 3, True)
    summary(int_aware_epochs=0, int_aware_control=False)   # a float stage 2: --float-control continues it
    assert accuracy._done(stage, 0, True) and not accuracy._done(stage, 3, True)
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--float-control"])                          # needs --int-aware-epochs N
    assert accuracy.Setup("mnist", int_aware_epochs=3, float_control=True).section() == \
        "## Accuracy (mnist, float control 3)"
