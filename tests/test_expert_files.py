"""Expert files: round trip, clear errors for every kind of bad file, and a fuzzed loader."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from t2bench.errors import ExpertFileError
from t2bench.svf import (
    TargetSpec,
    decompose,
    identity_expert,
    load_expert,
    load_experts,
    save_expert,
)
from t2bench.svf.files import FORMAT


@pytest.fixture
def expert(llama, tmp_path):
    d = decompose(llama, TargetSpec("mlp", "even"), cache_dir=tmp_path / "svd", progress=False)
    e = identity_expert(
        d,
        parameterisation="sigmoid",
        noise_std=0.3,
        seed=7,
        name="math",
        provenance={"seed": 7, "task": "gsm8k"},
    )
    return e


def _header(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def _rewrite_meta(src: Path, dst: Path, change) -> None:
    """Re-save ``src`` with its t2bench metadata dict passed through ``change``."""
    data = src.read_bytes()
    from safetensors.torch import load

    tensors = load(data)
    md = _header(data)["__metadata__"]
    meta = json.loads(md["t2bench"])
    change(meta)
    md["t2bench"] = json.dumps(meta)
    dst.write_bytes(st_save(tensors, metadata=md))


def test_round_trip_is_exact(expert, tmp_path):
    path = save_expert(expert, tmp_path / "math")
    assert path.name == "math.safetensors"
    back = load_expert(path)
    assert back.meta == expert.meta
    assert back.keys == expert.keys
    for k in expert.keys:
        assert torch.equal(back.params[k], expert.params[k])
    header = _header(path.read_bytes())
    assert header["__metadata__"]["format"] == FORMAT
    assert json.loads(header["__metadata__"]["t2bench"])["provenance"]["task"] == "gsm8k"


def test_save_never_overwrites_silently(expert, tmp_path):
    save_expert(expert, tmp_path / "e.safetensors")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_expert(expert, tmp_path / "e.safetensors")
    save_expert(expert, tmp_path / "e.safetensors", overwrite=True)


def test_load_folder_and_list(expert, tmp_path):
    save_expert(expert, tmp_path / "x" / "b")
    save_expert(expert, tmp_path / "x" / "a")
    assert len(load_experts(tmp_path / "x")) == 2
    assert len(load_experts([tmp_path / "x" / "a.safetensors"])) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExpertFileError, match="holds no"):
        load_experts(tmp_path / "empty")


def test_missing_file(tmp_path):
    with pytest.raises(ExpertFileError, match="no expert file at"):
        load_expert(tmp_path / "nope.safetensors")


@pytest.mark.parametrize(
    ("cut", "says"),
    [
        (3, "only 3 bytes: a truncated file or not a safetensors file"),
        (20, "truncated: 20 bytes, its header alone needs"),
        (-7, r"truncated: \d+ of the \d+ bytes its header lists"),
    ],
)
def test_truncated_file(expert, tmp_path, cut, says):
    path = save_expert(expert, tmp_path / "e")
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ExpertFileError, match="truncated or damaged") as err:
        load_expert(path)
    assert re.search(says, str(err.value)), str(err.value)


def test_a_file_that_is_not_safetensors_says_so(tmp_path):
    p = tmp_path / "notes.safetensors"
    p.write_text("# my notes about the math expert\n" * 4)
    with pytest.raises(ExpertFileError, match=r"not a safetensors file \(it starts with b'# my no"):
        load_expert(p)


def test_plain_safetensors_is_not_an_expert(tmp_path):
    p = tmp_path / "plain.safetensors"
    p.write_bytes(st_save({"w": torch.zeros(3)}))
    with pytest.raises(ExpertFileError, match="not a t2bench expert"):
        load_expert(p)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda m: m.pop("shapes"), "'shapes' is missing"),
        (lambda m: m.update(parameterisation="tanh"), "unknown parameterisation 'tanh'"),
        (lambda m: m.update(layers=["0"]), "list of integers"),
        (lambda m: m["shapes"].update({"layers.0.gate": [48, -1]}), "two positive integers"),
        (lambda m: m["shapes"].update({"layers.9.gate": [48, 32]}), "do not match the metadata"),
        (lambda m: m["shapes"].update({"layers.0.gate": [48, 31]}), r"expected float32 \(31,\)"),
    ],
)
def test_bad_metadata(expert, tmp_path, change, match):
    src = save_expert(expert, tmp_path / "e")
    bad = tmp_path / "bad.safetensors"
    _rewrite_meta(src, bad, change)
    with pytest.raises(ExpertFileError, match=match):
        load_expert(bad)


def test_newer_format_version_says_upgrade(expert, tmp_path):
    src = save_expert(expert, tmp_path / "e")
    data = src.read_bytes()
    from safetensors.torch import load

    md = _header(data)["__metadata__"]
    md["format_version"] = "99"
    src.write_bytes(st_save(load(data), metadata=md))
    with pytest.raises(ExpertFileError, match="Upgrade t2bench"):
        load_expert(src)


def test_nan_vector_is_rejected(expert, tmp_path):
    expert.params[expert.keys[0]][3] = float("nan")
    path = save_expert(expert, tmp_path / "nan")
    with pytest.raises(ExpertFileError, match="NaN or infinite"):
        load_expert(path)


# --- fuzzing: whatever the bytes, the loader returns an Expert or raises ExpertFileError ---------


def _check_loader(path: Path) -> None:
    try:
        e = load_expert(path)
    except ExpertFileError:
        return
    for k, v in e.params.items():
        assert v.dtype == torch.float32 and v.numel() == min(e.meta.shapes[k])
        assert bool(torch.isfinite(v).all())


_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_files(expert, tmp_path, data):
    good = save_expert(expert, tmp_path / "good", overwrite=True).read_bytes()
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        elif op == "insert":
            i = data.draw(st.integers(0, len(raw)))
            raw[i:i] = data.draw(st.binary(max_size=16))
        elif op == "header" and len(raw) >= 8:
            raw[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(raw))
    _check_loader(path)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


@_FUZZ
@given(
    field=st.sampled_from(
        [
            "base_model",
            "shape_fingerprint",
            "module_set",
            "layers",
            "shapes",
            "parameterisation",
            "name",
            "provenance",
            "__new__",
        ]
    ),
    value=_json,
)
def test_fuzz_metadata_values(expert, tmp_path, field, value):
    src = save_expert(expert, tmp_path / "src", overwrite=True)
    bad = tmp_path / "bad.safetensors"
    _rewrite_meta(src, bad, lambda m: m.__setitem__(field, value))
    _check_loader(bad)
