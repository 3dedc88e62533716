"""The verdict table: each paper claim an ablation table tests, read from the table's per-item
scores, judged by where its 95% interval lies, and written at the top of the ablations index."""

from __future__ import annotations

import json

from t2bench.ablations import write_index
from t2bench.ablations.verdicts import VERDICTS, Measurement, measurements

SUPPORTED, CONTRADICTED, UNDETERMINED = VERDICTS


def _run(root, name: str, tables: dict[str, dict]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    summary = {
        "profile": "cpu",
        "modules": list(tables),
        "status": {t: {"ok": True} for t in tables},
        "wall_seconds": 60,
        "provenance": {"commit": "abcdef1234567"},
    }
    (folder / "run.json").write_text(json.dumps(summary))
    for table, payload in tables.items():
        (folder / f"{table}.json").write_text(json.dumps(payload))


N = 200
BASE = [1] * 40 + [0] * 160  # 20%
BETTER = [1] * 120 + [0] * 80  # 60%: +40 points on the same items
WORSE = [0] * N


def _tables() -> dict[str, dict]:
    table1 = {
        "math": {"uids": list(range(N)), "base": BASE, "SVF (PG)": BETTER, "LoRA (NTP)": WORSE}
    }
    table3 = {
        "rows": [
            {"task": "ARC", "strategy": "prompt", "n": 60, "ratio": 0.3, "paper (prompt)": "47%"},
            {"task": "MATH", "strategy": "prompt", "n": 20, "ratio": 0.6, "paper (prompt)": "13%"},
            {"task": "ARC", "strategy": "label", "n": 60, "ratio": 0.1, "paper (prompt)": ""},
        ],
        "data": {},
    }
    return {
        "table1-training-tasks": {"rows": [], "data": table1, "provenance": {"commit": "c" * 40}},
        "table3-two-pass-cost": table3,
    }


def test_verdicts_follow_the_interval_and_head_the_index(tmp_path):
    _run(tmp_path, "cpu-20260101T000000Z", _tables())
    text = write_index(tmp_path).read_text()
    head, runs = text.split("Newest result of each table", 1)
    assert "## Verdicts" in head  # the first thing a reader sees, before the run list
    lines = {line.split(" | ")[1]: line for line in head.splitlines() if line.startswith("| SVF")}
    # +40 points with the interval above zero: supported; SVF − LoRA (60% vs 0%) likewise
    assert f"**{SUPPORTED}**" in lines["math: SVF (PG) − base"]
    assert f"**{SUPPORTED}**" in lines["math: SVF (PG) − LoRA (NTP)"]
    # cost: 30% ≤ the paper's 47% supports it, 60% > 13% contradicts it; label is no claim
    cost = [line for line in head.splitlines() if "first / second pass" in line]
    assert len(cost) == 2
    assert f"**{SUPPORTED}**" in cost[0] and f"**{CONTRADICTED}**" in cost[1]
    saved = json.loads((tmp_path / "verdicts.json").read_text())
    assert saved["sources"]["table1-training-tasks"]["file"] == (
        "cpu-20260101T000000Z/table1-training-tasks.json"
    )
    assert saved["sources"]["table1-training-tasks"]["provenance"] == {"commit": "c" * 40}
    assert saved["provenance"]["commit"] and saved["provenance"]["machine"]
    assert [m["verdict"] for m in saved["measurements"]][:2] == [SUPPORTED, SUPPORTED]
    assert saved["measurements"][0]["table"] == "cpu-20260101T000000Z/table1-training-tasks.json"


def test_a_worse_variant_contradicts_and_a_small_n_leaves_it_undetermined(tmp_path):
    tables = _tables()
    d = tables["table1-training-tasks"]["data"]["math"]
    d["SVF (PG)"] = WORSE  # 0% vs the base's 20%: the interval lies below zero
    d["LoRA (NTP)"] = WORSE
    tables["table1-training-tasks"]["data"]["code"] = {
        "base": [0, 1, 0, 0],
        "SVF (PG)": [1, 1, 0, 0],
    }
    _run(tmp_path, "cpu-20260101T000000Z", tables)
    found = {
        m.what: m for m in measurements(tmp_path, {"table1-training-tasks": "cpu-20260101T000000Z"})
    }
    assert found["math: SVF (PG) − base"].verdict == CONTRADICTED
    small = found["code: SVF (PG) − base"]
    assert small.verdict == UNDETERMINED and small.mdd > 0.5  # 4 items cannot see 50 points
    assert (
        "math: SVF (PG) − LoRA (NTP)" in found
        and found["math: SVF (PG) − LoRA (NTP)"].verdict == UNDETERMINED
    )


def test_a_claim_of_a_decrease_is_supported_by_a_negative_difference():
    diff = {"diff": -0.3, "ci_low": -0.4, "ci_high": -0.2}
    m = Measurement("forgets", "SEAL", "x", "t.json", 100, diff, 0.1, sign=-1)
    assert m.verdict == SUPPORTED
    assert Measurement("gains", "T2", "x", "t.json", 100, diff, 0.1).verdict == CONTRADICTED


def test_seal_intervals_resample_passages(tmp_path):
    # 10 passages x 3 questions; the self-edit wins whole passages: the questions of a passage
    # move together, so they count as less evidence than 30 independent questions
    uids = [f"p{i}" for i in range(10) for _ in range(3)]
    only = [0] * 30
    edit = [1] * 9 + [0] * 21
    seal = {
        "data": {
            "passage only | svf": {"uids": uids, "scores": only},
            "passage + own self-edit (no RL) | svf": {"uids": uids, "scores": edit},
        }
    }
    _run(tmp_path, "cpu-20260101T000000Z", {"seal-knowledge": seal})
    (m,) = measurements(tmp_path, {"seal-knowledge": "cpu-20260101T000000Z"})
    assert m.diff["method"] == "cluster-bootstrap" and m.diff["clusters"] == 10
    assert m.n == 30 and m.diff["diff"] == 0.3


def test_cli_index_only_rewrites_the_index_from_the_tables_there(tmp_path, capsys):
    from t2bench.cli import main

    _run(tmp_path, "cpu-20260101T000000Z", _tables())
    assert main(["ablations", "--index-only", "--out", str(tmp_path)]) == 0
    assert "index:" in capsys.readouterr().out
    assert "## Verdicts" in (tmp_path / "README.md").read_text()
    assert not any(
        p.name.startswith("cpu-2026") and p.name != "cpu-20260101T000000Z"
        for p in tmp_path.iterdir()
    )
