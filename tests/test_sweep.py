"""The lr x KL sweep: grid, selection rules, record, the long run's hyperparameters file,
and learning curves drawn from run logs (fake run folders; no model is trained here)."""

import json

import pytest

from t2bench.errors import ConfigError
from t2bench.train import recipes, sweep
from t2bench.train.sweep import SweepConfig, point_name, read_point, select


def fake_run(folder, lr, kl, valid, rewards=(-0.5, -0.2, 0.1), n=20):
    """A finished run folder as the trainer leaves it: log.jsonl and summary.json."""
    folder.mkdir(parents=True)
    log = []
    for i, r in enumerate(rewards, start=1):
        log.append({"step": i, "loss": 0.1, "reward": r, "zero_advantage_share": 0.5})
    for step, acc in valid:
        log[step - 1] |= {"valid_accuracy": acc, "valid_n": n}
    (folder / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    summary = {
        "config": {"lr": lr, "kl_coef": kl},
        "steps_done": len(rewards),
        "provenance": {
            "wall_seconds": 12.0,
            "commit": "abc",
            "seed": 0,
            "weights_sha256": {"model": "w"},
            "data_items": {"selection": {"n": n, "items_sha256": "i"}},
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def config(tmp_path, **kw):
    args = dict(recipe="reasoning-svf-pg", lrs=(1e-3, 1e-2), kl_coefs=(0.0, 0.1), steps=3)
    return SweepConfig(**(args | dict(eval_every=1, eval_size=20, out_root=str(tmp_path)) | kw))


def test_bad_grids_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least one"):
        config(tmp_path, lrs=())
    with pytest.raises(ConfigError, match="must be > 0"):
        config(tmp_path, lrs=(0.0,))
    with pytest.raises(ConfigError, match="KL coefficients >= 0"):
        config(tmp_path, kl_coefs=(-0.1,))
    with pytest.raises(ConfigError, match="eval_size must be >= 1"):
        config(tmp_path, eval_size=0)


def test_read_point_takes_the_best_evaluation_and_its_interval(tmp_path):
    row = read_point(fake_run(tmp_path / "p", 0.01, 0.1, [(1, 0.2), (2, 0.6), (3, 0.5)]))
    assert (row["best_valid_accuracy"], row["best_step"], row["valid_n"]) == (0.6, 2, 20)
    lo, hi = row["best_ci"]
    assert lo < 0.6 < hi  # Wilson at 12/20
    assert row["mean_valid_accuracy"] == pytest.approx((0.2 + 0.6 + 0.5) / 3)
    assert row["first_reward"] == -0.5 and row["last_rewards_mean"] == pytest.approx(-0.2)


def test_the_base_record_is_reported_but_never_the_best(tmp_path):
    folder = fake_run(tmp_path / "p", 0.01, 0.0, [(2, 0.3)])
    lines = (folder / "log.jsonl").read_text()
    (folder / "log.jsonl").write_text(
        json.dumps({"step": 0, "valid_accuracy": 0.9, "valid_n": 20, "base": True}) + "\n" + lines
    )
    row = read_point(folder)
    assert row["base_valid_accuracy"] == 0.9
    assert (row["best_valid_accuracy"], row["best_step"]) == (0.3, 2)


def test_a_point_without_validation_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no validation evaluation"):
        read_point(fake_run(tmp_path / "p", 0.01, 0.1, []))


def test_selection_rules():
    def row(point, best, mean, lr, kl):
        return dict(
            point=point, best_valid_accuracy=best, mean_valid_accuracy=mean, lr=lr, kl_coef=kl
        )

    rows = [row("a", 0.5, 0.3, 1e-2, 0.1), row("b", 0.6, 0.2, 1e-2, 0.1)]
    assert select(rows)["point"] == "b"  # best accuracy first
    rows = [row("a", 0.6, 0.3, 1e-2, 0.1), row("b", 0.6, 0.4, 1e-2, 0.1)]
    assert select(rows)["point"] == "b"  # then the mean of the curve
    rows = [row("a", 0.6, 0.4, 1e-2, 0.1), row("b", 0.6, 0.4, 1e-3, 0.1)]
    assert select(rows)["point"] == "b"  # then the smaller lr
    rows = [row("a", 0.6, 0.4, 1e-2, 0.1), row("b", 0.6, 0.4, 1e-2, 0.0)]
    assert select(rows)["point"] == "b"  # then the smaller KL
    with pytest.raises(ConfigError, match="no finished sweep point"):
        select([])


def test_run_sweep_keeps_finished_points_and_writes_the_record(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    accs = {(1e-3, 0.0): 0.1, (1e-3, 0.1): 0.15, (1e-2, 0.0): 0.55, (1e-2, 0.1): 0.5}
    # one point finished earlier: run_point must keep it and not start a process
    fake_run(cfg.folder / point_name(1e-3, 0.0), 1e-3, 0.0, [(3, accs[(1e-3, 0.0)])])
    started = []

    def fake_launch(cmd):
        out = cmd[cmd.index("--output-dir") + 1]
        lr, kl = float(cmd[cmd.index("--lr") + 1]), float(cmd[cmd.index("--kl-coef") + 1])
        assert cmd[cmd.index("--eval-size") + 1] == "20" and cmd[cmd.index("--steps") + 1] == "3"
        assert (
            cmd[cmd.index("--patience") + 1] == "0"
        )  # equal horizons, whatever the recipe's patience
        started.append((lr, kl))
        from pathlib import Path

        fake_run(Path(out), lr, kl, [(3, accs[(lr, kl)])])

    monkeypatch.setattr(sweep, "launch", fake_launch)
    record = sweep.run_sweep(cfg)
    assert (1e-3, 0.0) not in started and len(started) == 3
    assert record["selected"] == {"point": "lr0.01-kl0", "lr": 1e-2, "kl_coef": 0.0}
    assert record["within_selected_ci"]  # 0.50 vs 0.55 at n = 20 cannot be told apart
    assert "lr0.01-kl0.1" in record["within_selected_ci"]
    md = (cfg.folder / "sweep.md").read_text()
    assert "lr0.01-kl0 **selected**" in md and "not separable at n = 20" in md
    written = json.loads((cfg.folder / "sweep.json").read_text())
    assert written["rows"][0]["valid_n"] == 20
    from t2bench.core.provenance import provenance_gaps

    assert provenance_gaps(written["provenance"]) == []  # seed, weights, items from the points
    assert written["provenance"]["wall_seconds"] == 4 * 12.0
    assert sweep.selected(cfg.recipe, str(tmp_path))["lr"] == 1e-2
    assert sweep.selected("math-svf-pg", str(tmp_path)) is None
    # rerun with every point finished: nothing trains and the record is not rewritten
    written = (cfg.folder / "sweep.json").read_text()
    assert sweep.run_sweep(cfg) == json.loads(written) and len(started) == 3
    assert (cfg.folder / "sweep.json").read_text() == written


def test_the_long_run_records_and_keeps_its_selected_hyperparameters(tmp_path):
    cfg = config(tmp_path)
    record = {
        "selected": {"point": "lr0.01-kl0", "lr": 1e-2, "kl_coef": 0.0},
        "criterion": "c",
        "provenance": {"commit": "abc", "seed": 0},
    }
    path = recipes._hyperparameters_file(tmp_path / "run", record, cfg)
    fields = json.loads(path.read_text())
    assert (fields["lr"], fields["kl_coef"]) == (1e-2, 0.0)
    assert fields["extra"]["hyperparameters_from"]["point"] == "lr0.01-kl0"
    assert fields["extra"]["hyperparameters_from"]["provenance"] == record["provenance"]
    from t2bench.train.config import TrainConfig

    TrainConfig.from_dict(recipes.recipe("reasoning-svf-pg") | fields)  # valid TrainConfig fields
    assert recipes._hyperparameters_file(tmp_path / "run", record, cfg) == path  # resume: same
    record["selected"] |= {"lr": 5e-2}
    with pytest.raises(ConfigError, match="started with the former"):
        recipes._hyperparameters_file(tmp_path / "run", record, cfg)


def test_learning_curves_are_drawn_from_the_log(tmp_path, monkeypatch):
    from t2bench.report.curves import curve_png, running_mean, sweep_curves

    assert running_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    run = fake_run(tmp_path / "sw" / "lr0.01-kl0", 1e-2, 0.0, [(1, 0.2), (3, 0.4)])
    log = (run / "log.jsonl").read_text()  # with the base model's step-0 record first
    (run / "log.jsonl").write_text(
        json.dumps({"step": 0, "valid_accuracy": 0.1, "valid_n": 20}) + "\n" + log
    )
    drawn = {}
    from t2bench.report import curves

    real_figure = curves.figure

    def spy_figure(*a):
        fig = real_figure(*a)
        drawn["fig"] = fig
        return fig

    monkeypatch.setattr(curves, "figure", spy_figure)
    png = curve_png(run, tmp_path / "c.png")
    left, right = drawn["fig"].axes
    lines = {ln.get_label(): ln for ln in left.get_lines()}
    assert set(lines) == {"reward (step)", "reward (5-step mean)", "zero-advantage share"}
    assert list(lines["reward (5-step mean)"].get_xdata()) == [1, 2, 3]  # no step 0, no NaN
    assert list(right.get_lines()[0].get_xdata()) == [0, 1, 3]  # the base starts the curve
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in sweep_curves(tmp_path / "sw")] == ["lr0.01-kl0.png"]


def test_stage_two_reruns_the_best_points_longer_and_selects_among_them(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="stage 2 needs both"):
        config(tmp_path, stage2_steps=6)
    with pytest.raises(ConfigError, match="stage 2 needs both"):
        config(tmp_path, stage2_steps=3, stage2_top=1)  # not longer than stage 1
    cfg = config(tmp_path, stage2_steps=6, stage2_top=2)
    short = {(1e-3, 0.0): 0.1, (1e-3, 0.1): 0.15, (1e-2, 0.0): 0.55, (1e-2, 0.1): 0.5}
    # the best short run collapses when run longer; the runner-up keeps learning
    long = {(1e-2, 0.0): [(3, 0.3), (6, 0.05)], (1e-2, 0.1): [(3, 0.5), (6, 0.6)]}
    started = []

    def fake_launch(cmd):
        from pathlib import Path

        out = Path(cmd[cmd.index("--output-dir") + 1])
        lr, kl = float(cmd[cmd.index("--lr") + 1]), float(cmd[cmd.index("--kl-coef") + 1])
        steps = int(cmd[cmd.index("--steps") + 1])
        started.append((out.name, steps))
        curve = long[(lr, kl)] if steps == 6 else [(3, short[(lr, kl)])]
        fake_run(out, lr, kl, curve, rewards=tuple([-0.5] * steps))

    monkeypatch.setattr(sweep, "launch", fake_launch)
    record = sweep.run_sweep(cfg)
    assert [s for s in started if s[1] == 6] == [("lr0.01-kl0-s2", 6), ("lr0.01-kl0.1-s2", 6)]
    assert record["selected"] == {"point": "lr0.01-kl0.1-s2", "lr": 1e-2, "kl_coef": 0.1}
    assert [r["point"] for r in record["stage2_rows"]] == ["lr0.01-kl0-s2", "lr0.01-kl0.1-s2"]
    md = (cfg.folder / "sweep.md").read_text()
    assert "## Stage 2: the 2 best points, 6 steps" in md and "-s2 **selected**" in md


def test_a_point_stopped_without_signal_reads_as_collapsed(tmp_path):
    folder = fake_run(tmp_path / "p", 0.01, 0.0, [(2, 0.4)])
    assert read_point(folder)["collapsed"] is False
    summary = json.loads((folder / "summary.json").read_text())
    summary["stopped"] = "early stop: no learning signal in 10 consecutive steps (...)"
    (folder / "summary.json").write_text(json.dumps(summary))
    assert read_point(folder)["collapsed"] is True


def barren_run(folder, lr, kl, steps=3, batch=32, signal_at=None):
    """A policy-gradient point whose samples never (or only at step ``signal_at``) earned
    different rewards within a group: zero gradient at every other step."""
    fake_run(folder, lr, kl, [(steps, 0.03)], rewards=tuple([-1.0] * steps))
    log = [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]
    for r in log:
        moved = r["step"] == signal_at
        r |= {"no_signal": not moved, "grad_norm": 0.3 if moved else 0.0, "accuracy": 0.0}
    (folder / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    summary = json.loads((folder / "summary.json").read_text())
    summary["config"] |= {"global_batch": batch, "weight_decay": 0.0}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_a_sweep_whose_first_point_never_learned_stops_and_selects_nothing(tmp_path, monkeypatch):
    cfg = config(tmp_path, stage2_steps=6, stage2_top=2)
    started = []

    def fake_launch(cmd):
        from pathlib import Path

        out = Path(cmd[cmd.index("--output-dir") + 1])
        started.append(out.name)
        barren_run(out, float(cmd[cmd.index("--lr") + 1]), float(cmd[cmd.index("--kl-coef") + 1]))

    monkeypatch.setattr(sweep, "launch", fake_launch)
    record = sweep.run_sweep(cfg)
    assert started == ["lr0.001-kl0"]  # no other point, no stage 2
    assert record["selected"] is None and record["stage2_rows"] == []
    barren = record["no_signal"]
    assert (barren["samples"], barren["samples_rewarded"]) == (96, 0)
    assert 0.0 < barren["sampled_success_rate_upper95"] < 0.05
    assert "Nothing selected: no learning signal" in (cfg.folder / "sweep.md").read_text()
    assert sweep.selected(cfg.recipe, str(tmp_path)) is None
    # the long run is not trained from such a sweep
    launched = []
    monkeypatch.setattr(recipes, "sweep_config", lambda *a: cfg)
    monkeypatch.setattr(recipes, "run_sweep", lambda c: record)
    monkeypatch.setattr("subprocess.run", lambda *a, **k: launched.append(a))
    assert recipes.run_recipes(["reasoning-svf-pg"], out_root=str(tmp_path / "runs")) == []
    assert launched == []


def test_one_step_with_signal_or_weight_decay_is_not_a_barren_point(tmp_path):
    assert sweep.never_learned(barren_run(tmp_path / "a", 0.01, 0.0)) is not None
    assert sweep.never_learned(barren_run(tmp_path / "b", 0.01, 0.0, signal_at=2)) is None
    decayed = barren_run(tmp_path / "c", 0.01, 0.0)
    summary = json.loads((decayed / "summary.json").read_text())
    summary["config"]["weight_decay"] = 0.01  # AdamW moves z without a gradient
    (decayed / "summary.json").write_text(json.dumps(summary))
    assert sweep.never_learned(decayed) is None
    # next-token prediction logs no reward: never a barren policy-gradient point
    ntp = barren_run(tmp_path / "d", 0.01, 0.0)
    log = [json.loads(x) for x in (ntp / "log.jsonl").read_text().splitlines()]
    (ntp / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log if "reward" not in x))
    assert sweep.never_learned(ntp) is None


def test_a_pg_expert_without_signal_is_replaced_by_its_ntp_fallback(tmp_path, monkeypatch):
    """code-svf-pg's sweep found no signal: code-svf-ntp trains in its place (with its own
    sweep's choice), so the code category still has an expert; nothing else is added."""
    from types import SimpleNamespace

    barren = {"selected": None, "no_signal": {"finding": "no signal"}}
    chosen = {
        "selected": {"lr": 0.01, "kl_coef": 0.0, "point": "lr0.01-kl0"},
        "criterion": "best",
        "provenance": {},
    }
    sweeps = []

    def sweep_config(name, profile, root):
        sweeps.append(name)
        return SimpleNamespace(name=name, folder=tmp_path / "sweeps" / name)

    launched = []
    monkeypatch.setattr(recipes, "sweep_config", sweep_config)
    monkeypatch.setattr(recipes, "run_sweep", lambda c: barren if c.name.endswith("pg") else chosen)
    monkeypatch.setattr("subprocess.run", lambda cmd, **k: launched.append(cmd))
    ran = recipes.run_recipes(["code-svf-pg"], out_root=str(tmp_path / "runs"))
    assert sweeps == ["code-svf-pg", "code-svf-ntp"]
    assert ran == ["code-svf-ntp"] and len(launched) == 1
    assert launched[0][launched[0].index("--recipe") + 1] == "code-svf-ntp"
    # a fallback is never in a profile's default list: it trains only in place of a barren run
    assert "code-svf-ntp" not in recipes.profile_recipes("cpu")
    assert recipes.recipe("code-svf-ntp", "cpu")["objective"] == "ntp"
