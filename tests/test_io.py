"""``t2bench.core.io``: atomic replacement, records that are never overwritten, the results root."""

from __future__ import annotations

import hashlib
import json

import pytest

from t2bench.core import io


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "record.json"
    io.write_json_atomic(path, {"n": 1})
    with pytest.raises(RuntimeError), io.replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"n": 1}
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_a_folder_is_replaced_whole(tmp_path):
    final = tmp_path / "checkpoints" / "step-000001"
    for text in ("first", "second"):
        with io.replacing(final, folder=True) as tmp:
            (tmp / "state.json").write_text(text)
    assert [p.name for p in final.iterdir()] == ["state.json"]
    assert (final / "state.json").read_text() == "second"
    assert [p.name for p in final.parent.iterdir()] == ["step-000001"]


def test_new_records_never_replace_each_other(tmp_path):
    first = io.new_record(tmp_path, "bench", {"n": 1})
    second = io.new_record(tmp_path, "bench", {"n": 2})
    assert first != second and json.loads(first.read_text()) == {"n": 1}
    assert first.name.startswith("bench-") and first.name.endswith("Z.json")
    assert io.new_folder(tmp_path, "run") != io.new_folder(tmp_path, "run")


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (3 << 20))
    assert io.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_results_root_moves_with_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(io.RESULTS_ENV, raising=False)
    assert io.results_path("experts").as_posix() == "results/experts"
    monkeypatch.setenv(io.RESULTS_ENV, str(tmp_path))
    assert io.results_path("sweeps", "x") == tmp_path / "sweeps" / "x"
