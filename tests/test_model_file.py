"""gsbsim.model_file: round trip, every error path of load_model, atomic save."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from gsbsim.format import model_file as mf
from gsbsim.format.model_file import IntModel, ModelFileError, expected_arrays, load_model, save_model
from gsbsim.format.random_model import random_model


@pytest.fixture(scope="module")
def model() -> IntModel:
    return random_model(np.random.default_rng(7), embed_dim=40, depth=2, num_heads=4, mlp_hidden=70,
                        num_classes=5, groups=3)


def _write_raw(path, header, arrays, *, header_bytes=None) -> str:
    """Write an npz exactly as given (no validation), to build corrupt files."""
    hb = mf.header_bytes(header) if header_bytes is None else header_bytes
    np.savez(path, header=hb, **arrays)
    return str(path)


def _expect_error(path, *words: str) -> str:
    with pytest.raises(ModelFileError) as ei:
        load_model(path)
    msg = str(ei.value)
    assert str(path) in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)
    return msg


# ----------------------------------------------------------------------------- round trip
def test_round_trip_preserves_header_arrays_and_dtypes(model, tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, model.header, model.arrays)
    back = load_model(path)
    assert back.path == str(path)
    assert back.header == model.header
    assert set(back.arrays) == set(expected_arrays(model.header))
    for name, arr in model.arrays.items():
        assert back.arrays[name].dtype == arr.dtype, name
        assert back.arrays[name].shape == arr.shape, name
        assert np.array_equal(back.arrays[name], arr), name
    # the stored header is UTF-8 JSON in a uint8 array, the version an int64 scalar
    with np.load(path, allow_pickle=False) as z:
        assert z["header"].dtype == np.uint8
        assert json.loads(z["header"].tobytes().decode()) == model.header
        assert z["format_version"].dtype == np.int64 and int(z["format_version"]) == mf.FORMAT_VERSION


def test_convenience_properties_and_block(model):
    assert (model.embed_dim, model.depth, model.num_heads, model.head_dim) == (40, 2, 4, 10)
    assert (model.mlp_hidden, model.num_tokens, model.num_classes, model.groups) == (70, 18, 5, 3)
    assert model.ratios == (179, 230) and model.mask_stat == "row" and model.frac_bits == 12
    assert (model.img_size, model.patch_size, model.in_chans) == (8, 2, 1)
    assert model.shifts["prob"] == 16 and set(model.shifts) == set(mf.SHIFT_NAMES)
    blk = model.block(1)
    assert set(blk) == set(mf.block_array_names("gsb"))
    assert blk["qkv.weight"] is model.arrays["blocks.1.qkv.weight"]
    assert blk["qkv.weight"].shape == (120, 1) and blk["fc2.weight"].shape == (40, 2)
    with pytest.raises(IndexError):
        model.block(2)


def test_expected_arrays_table(model):
    exp = expected_arrays(model.header)
    assert exp["blocks.0.att_bias"] == (np.dtype(np.int32), (4, 18, 18))
    assert exp["blocks.1.exp_lut"] == (np.dtype(np.int64), (11,))
    assert exp["blocks.0.a.thr1"] == (np.dtype(np.int64), ())
    assert exp["patch.weight"] == (np.dtype(np.int8), (40, 4))
    assert exp["head_dist.weight"] == (np.dtype(np.int8), (5, 40))
    # 5 global + 22 per block + 7 head arrays + format_version
    assert len(exp) == 5 + 22 * 2 + 9 + 1


# ----------------------------------------------------------------------------- unreadable files
def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.npz", "no such file")


def test_directory_is_not_a_model(tmp_path):
    _expect_error(tmp_path, "directory")


def test_random_bytes(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"\x00" + np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    _expect_error(p, "not an .npz")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    _expect_error(empty, "not an .npz")


def test_truncated_zip(model, tmp_path):
    good = tmp_path / "good.npz"
    save_model(good, model.header, model.arrays)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        p = tmp_path / f"cut{cut}.npz"
        p.write_bytes(data[:cut])
        _expect_error(p)


def test_corrupt_member_crc(model, tmp_path):
    good = tmp_path / "good.npz"
    save_model(good, model.header, model.arrays)
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("pos.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[start] ^= 0xFF  # flip a byte inside pos.npy's data: CRC mismatch
    p = tmp_path / "crc.npz"
    p.write_bytes(bytes(data))
    _expect_error(p)


def test_plain_npy_is_not_an_archive(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.arange(3))
    _expect_error(p, "not an .npz")


def test_pickled_object_array(model, tmp_path):
    arrays = dict(model.arrays)
    arrays["blocks.0.exp_lut"] = np.array([{"evil": 1}, 2], dtype=object)
    p = _write_raw(tmp_path / "obj.npz", model.header, arrays)
    _expect_error(p, "pickle")


# ----------------------------------------------------------------------------- bookkeeping arrays
def test_unknown_format_version(model, tmp_path):
    arrays = dict(model.arrays, format_version=np.array(99, dtype=np.int64))
    _expect_error(_write_raw(tmp_path / "v99.npz", model.header, arrays), "format version 99")


def test_missing_format_version_and_header(model, tmp_path):
    arrays = {k: v for k, v in model.arrays.items() if k != "format_version"}
    _expect_error(_write_raw(tmp_path / "nov.npz", model.header, arrays), "format_version")
    p = tmp_path / "noh.npz"
    np.savez(p, **model.arrays)
    _expect_error(p, "header")


def test_bad_header_json(model, tmp_path):
    bad = np.frombuffer(b'{"format": "gsbsim-int", ', dtype=np.uint8)
    _expect_error(_write_raw(tmp_path / "json.npz", model.header, model.arrays, header_bytes=bad), "JSON")
    not_utf8 = np.frombuffer(b"\xff\xfe\x00", dtype=np.uint8)
    _expect_error(_write_raw(tmp_path / "utf.npz", model.header, model.arrays, header_bytes=not_utf8), "UTF-8")
    as_list = mf.header_bytes([1, 2])  # valid JSON, not an object
    _expect_error(_write_raw(tmp_path / "list.npz", model.header, model.arrays, header_bytes=as_list), "object")


@pytest.mark.parametrize("key", ["embed_dim", "shifts", "ln_eps", "method"])
def test_missing_header_key(model, tmp_path, key):
    header = {k: v for k, v in model.header.items() if k != key}
    _expect_error(_write_raw(tmp_path / "k.npz", header, model.arrays), "missing key", key)


@pytest.mark.parametrize("change, words", [
    ({"extra_key": 1}, ["unknown key", "extra_key"]),
    ({"format": "other"}, ["format"]),
    ({"head_dim": 8}, ["head_dim"]),
    ({"num_tokens": 17}, ["num_tokens"]),
    ({"img_size": 9}, ["multiple of patch_size"]),
    ({"ratios": [179]}, ["ratios"]),
    ({"ratios": [0, 230]}, ["1..255"]),
    ({"ratios": [179, 256]}, ["1..255"]),
    ({"mask_stat": "batch"}, ["mask_stat"]),
    ({"embed_dim": 40.0}, ["embed_dim", "integer"]),
    ({"depth": True}, ["depth"]),
    ({"ln_eps": 0}, ["ln_eps"]),
    ({"frac_bits": 31}, ["frac_bits"]),
    ({"float_top1": float("nan")}, ["float_top1"]),
])
def test_bad_header_values(model, tmp_path, change, words):
    header = dict(model.header, **change)
    _expect_error(_write_raw(tmp_path / "h.npz", header, model.arrays), *words)


@pytest.mark.parametrize("shifts, word", [
    ({"prob": 16, "recip": 16}, "recip"),
    ({"ln": 25}, "shifts.ln"),
    ({"resid": 0}, "shifts.resid"),
    ({"prob": -1}, "shifts.prob"),
])
def test_bad_shifts(model, tmp_path, shifts, word):
    header = dict(model.header, shifts=dict(model.header["shifts"], **shifts))
    _expect_error(_write_raw(tmp_path / "s.npz", header, model.arrays), word)
    missing = dict(model.header, shifts={k: v for k, v in model.header["shifts"].items() if k != "ctx"})
    _expect_error(_write_raw(tmp_path / "s2.npz", missing, model.arrays), "shifts")


# ----------------------------------------------------------------------------- arrays
def test_missing_array(model, tmp_path):
    arrays = {k: v for k, v in model.arrays.items() if k != "blocks.1.fc1.thr_lo"}
    _expect_error(_write_raw(tmp_path / "m.npz", model.header, arrays), "missing array", "blocks.1.fc1.thr_lo")


def test_extra_unknown_array(model, tmp_path):
    arrays = dict(model.arrays, **{"blocks.0.surprise": np.zeros(3, np.int64)})
    _expect_error(_write_raw(tmp_path / "x.npz", model.header, arrays), "unknown array", "blocks.0.surprise")
    arrays = dict(model.arrays, **{"blocks.2.ln1.sign": model.arrays["blocks.0.ln1.sign"]})  # a block too many
    _expect_error(_write_raw(tmp_path / "x2.npz", model.header, arrays), "unknown array", "blocks.2.ln1.sign")


def test_wrong_shape(model, tmp_path):
    arrays = dict(model.arrays)
    arrays["blocks.0.att_bias"] = arrays["blocks.0.att_bias"][:, :-1]
    _expect_error(_write_raw(tmp_path / "s.npz", model.header, arrays), "shape", "blocks.0.att_bias")
    arrays = dict(model.arrays, **{"blocks.0.a.thr1": np.array([5], dtype=np.int64)})  # (1,) is not ()
    _expect_error(_write_raw(tmp_path / "s2.npz", model.header, arrays), "shape", "a.thr1")


def test_wrong_dtype(model, tmp_path):
    arrays = dict(model.arrays, **{"blocks.1.q.thr": model.arrays["blocks.1.q.thr"].astype(np.int64)})
    _expect_error(_write_raw(tmp_path / "d.npz", model.header, arrays), "dtype int64", "expected int32")
    arrays = dict(model.arrays, **{"blocks.0.qkv.weight": model.arrays["blocks.0.qkv.weight"].view(np.int64)})
    _expect_error(_write_raw(tmp_path / "d2.npz", model.header, arrays), "qkv.weight", "uint64")


def test_float_arrays_with_nan_and_inf(model, tmp_path):
    arrays = dict(model.arrays)
    thr = arrays["blocks.0.ln1.thr"].astype(np.float64)
    thr[3] = np.nan
    arrays["blocks.0.ln1.thr"] = thr
    _expect_error(_write_raw(tmp_path / "nan.npz", model.header, arrays), "float64", "NaN")
    arrays = dict(model.arrays, **{"blocks.0.proj.mult": np.array(np.inf)})
    _expect_error(_write_raw(tmp_path / "inf.npz", model.header, arrays), "proj.mult", "NaN/inf")
    arrays = dict(model.arrays, **{"pos": model.arrays["pos"].astype(np.float32)})  # finite floats: still wrong
    _expect_error(_write_raw(tmp_path / "f.npz", model.header, arrays), "pos", "float32")


@pytest.mark.parametrize("name, value, word", [
    ("blocks.0.ln1.thr", 2 ** 31, "ln1.thr"),
    ("blocks.1.ln2.thr", -(2 ** 31) - 1, "ln2.thr"),
    ("blocks.0.ln1.sign", 2, "ln1.sign"),
    ("blocks.0.v.offset", 2 ** 54 + 1, "v.offset"),
    ("blocks.0.exp_lut", 2 ** 16 + 1, "exp_lut"),
    ("blocks.0.exp_lut", -1, "exp_lut"),
    ("blocks.1.ctx.scale", 2 ** 44 + 1, "ctx.scale"),
    ("blocks.0.proj.mult", 2 ** 61 // 40 + 1, "proj.mult"),
    ("blocks.0.fc2.bias", -(2 ** 61) - 1, "fc2.bias"),
    ("patch.mult", 2 ** 61 // (128 * 128 * 4) + 1, "patch.mult"),
    ("norm.gain", 2 ** 22 + 1, "norm.gain"),
    ("head_dist_norm.offset", -(2 ** 28) - 1, "head_dist_norm.offset"),
    ("head.mult", 2 ** 61 // (128 * 128 * 40) + 1, "head.mult"),
    ("logit.bias", 2 ** 62, "logit.bias"),
])
def test_values_out_of_range(model, tmp_path, name, value, word):
    arrays = dict(model.arrays)
    a = arrays[name].copy()
    a.flat[a.size - 1] = value
    arrays[name] = a
    _expect_error(_write_raw(tmp_path / "r.npz", model.header, arrays), word)


def test_exp_lut_must_start_at_one(model, tmp_path):
    arrays = dict(model.arrays)
    lut = arrays["blocks.1.exp_lut"].copy()
    lut[0] -= 1
    arrays["blocks.1.exp_lut"] = lut
    _expect_error(_write_raw(tmp_path / "l.npz", model.header, arrays), "exp_lut[0]")


def test_nonzero_pad_bits(model, tmp_path):
    arrays = dict(model.arrays)
    w = arrays["blocks.0.fc1.weight"].copy()  # K = 40: bits 40..63 of the word are pads
    w[2, 0] |= np.uint64(1) << np.uint64(50)
    arrays["blocks.0.fc1.weight"] = w
    _expect_error(_write_raw(tmp_path / "p.npz", model.header, arrays), "pad bits", "fc1.weight")


def test_boundary_values_are_accepted(model, tmp_path):
    arrays = dict(model.arrays)
    thr = arrays["blocks.0.ln1.thr"].copy()
    thr[:2] = [2 ** 31 - 1, -(2 ** 31)]
    arrays["blocks.0.ln1.thr"] = thr
    arrays["blocks.0.a.thr1"] = np.array(-(2 ** 63), dtype=np.int64)  # compare-only: any int64
    p = _write_raw(tmp_path / "ok.npz", model.header, arrays)
    assert load_model(p).arrays["blocks.0.ln1.thr"][0] == 2 ** 31 - 1


# ----------------------------------------------------------------------------- saving
def test_save_validates_first_and_leaves_nothing(model, tmp_path):
    target = tmp_path / "m.npz"
    save_model(target, model.header, model.arrays)
    before = target.read_bytes()
    bad = dict(model.arrays, **{"blocks.0.ln1.sign": np.full(40, 3, dtype=np.int8)})
    with pytest.raises(ModelFileError) as ei:
        save_model(target, model.header, bad)
    assert str(target) in str(ei.value) and "ln1.sign" in str(ei.value)
    assert target.read_bytes() == before            # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temporary left behind
    fresh = tmp_path / "new.npz"
    with pytest.raises(ModelFileError):
        save_model(fresh, dict(model.header, groups=2), model.arrays)
    assert not fresh.exists()


def test_save_failure_midway_leaves_no_partial_file(model, tmp_path, monkeypatch):
    target = tmp_path / "m.npz"
    save_model(target, model.header, model.arrays)
    before = target.read_bytes()

    def exploding_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(mf.np, "savez", exploding_savez)
    with pytest.raises(ModelFileError, match="disk full") as ei:
        save_model(target, model.header, model.arrays)
    assert str(target) in str(ei.value)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_save_into_missing_directory(model, tmp_path):
    p = tmp_path / "no" / "such" / "m.npz"
    with pytest.raises(ModelFileError, match="does not exist") as ei:
        save_model(p, model.header, model.arrays)
    assert str(p) in str(ei.value)


def test_save_rejects_unserialisable_header(model, tmp_path):
    p = tmp_path / "m.npz"
    with pytest.raises(ModelFileError, match="JSON"):
        save_model(p, dict(model.header, source=object()), model.arrays)
    assert not p.exists()


def test_saved_file_has_ordinary_permissions(model, tmp_path):
    p = tmp_path / "m.npz"
    save_model(p, model.header, model.arrays)
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)


@pytest.mark.parametrize("method,ok", [("gsb", True), ("bit", True), ("sign", True), ("fp", False), ("didb", False)])
def test_methods_sharing_the_integer_model_load(tmp_path, method, ok):
    import numpy as np
    from gsbsim.format.random_model import random_model
    m = random_model(np.random.default_rng(0))
    header = dict(m.header, method=method)
    if ok:
        save_model(tmp_path / "m.npz", header, m.arrays)
        assert load_model(tmp_path / "m.npz").header["method"] == method
    else:
        with pytest.raises(ModelFileError, match="method"):
            save_model(tmp_path / "m.npz", header, m.arrays)
