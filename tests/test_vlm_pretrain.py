"""Tests for t2bench.vlm.pretrain: vision-side pre-training with the language model frozen.

Tiny everything: a 2-layer Llama over a character-level tokenizer (so prompts, answers and the
newline are real tokens), a 1-layer 48 px SigLIP tower (9 image tokens), 16 train items.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from t2bench.errors import ConfigError
from t2bench.tasks import textimages as ti
from t2bench.tasks.textimages import TextImageConfig
from t2bench.vlm import objectives as ob
from t2bench.vlm import pretrain as pt
from t2bench.vlm.assemble import (
    VISION_PREFIXES,
    VisionConfig,
    build_vlm,
    read_vision_weights,
    vision_state,
)
from tests.conftest import TINY_VISION

VISION = VisionConfig(**TINY_VISION)
DATA = TextImageConfig(image_size=48, n_train=16, n_valid=4, n_test=4, min_font=8, max_font=12)


@pytest.fixture(scope="module")
def lm_dir(char_llama_dir):
    """The 2-layer char-level Llama of conftest (prompts, answers and newline are real tokens)."""
    return char_llama_dir


@pytest.fixture(autouse=True)
def no_git(monkeypatch):
    """Provenance would shell out to git; the commit is irrelevant here."""
    monkeypatch.setattr("t2bench.core.provenance.git_commit", lambda repo=None: "test")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread (and far faster on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def vlm(lm_dir):
    model, processor, _ = build_vlm(lm_dir, VISION)
    return model, processor


@pytest.fixture(scope="module")
def items():
    return ti.make_split(DATA, "train")


def config(tmp_path, lm_dir, **kw) -> pt.PretrainConfig:
    base = dict(
        output_dir=tmp_path / "run",
        language_model=lm_dir,
        vision=VISION,
        data=DATA,
        seed=0,
        stage_a_steps=4,
        stage_a_batch=8,
        stage_a_lr=3e-3,
        stage_b_steps=4,
        stage_b_batch=4,
        lr_projector=3e-3,
        lr_vision=3e-4,
        eval_every=2,
        eval_n=4,
        max_new_tokens=4,
        checkpoint_every=2,
        progress=False,
    )
    return pt.PretrainConfig(**(base | kw))


def lm_params(model) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if not n.startswith(VISION_PREFIXES)
    }


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("chars", [False, True])
def test_stage_a_reduces_its_loss_on_a_fixed_batch(vlm, items, chars):
    model, processor = vlm
    pt.freeze_language_model(model)
    torch.manual_seed(0)
    heads = pt.AuxHeads(VISION.hidden_size, chars=chars)
    tower = [p for n, p in model.named_parameters() if n.startswith("model.vision_tower.")]
    opt = torch.optim.AdamW(tower + list(heads.parameters()), lr=3e-3)
    batch = items[:8]
    grid = (VISION.image_size, VISION.patch_size) if chars else None
    pixels, labels = pt.pixel_values(processor, batch), pt.stage_a_labels(batch, grid)
    with torch.no_grad():
        before, parts = pt.stage_a_loss(model, heads, pixels, labels)
    assert ("chars" in parts) is chars
    assert ("chars" in pt.stage_a_accuracy(model, heads, processor, batch)) is chars
    for _ in range(10):
        opt.zero_grad()
        pt.stage_a_loss(model, heads, pixels, labels)[0].backward()
        opt.step()
    with torch.no_grad():
        after = float(pt.stage_a_loss(model, heads, pixels, labels)[0])
    assert after < before


def test_character_labels_sit_in_the_patch_of_each_letter():
    cfg = TextImageConfig()  # 96 px, 16 px patches: a 6 x 6 grid
    item = ti.make_item(cfg, "train", 1)  # "School", DejaVuSerif 26 px, box x 4..93, y 31..51
    assert item["text"] == "School" and item["bbox"] == [4, 31, 93, 51]
    labels = pt.patch_char_labels([item], 96, 16).view(6, 6)
    ids = [pt.CHARSET.index(c) + 1 for c in "school"]
    assert labels[2].tolist() == ids  # one letter per column of the middle row, case folded
    assert int((labels != 0).sum()) == 6
    xs = [x for _, x, _ in ti.char_centres(item)]
    assert xs == sorted(xs) and 4 < xs[0] < xs[-1] < 93


def test_stage_a_labels_follow_the_drawn_text():
    items = [
        {"text": "STOP", "text_colour": "red"},
        {"text": "7", "text_colour": "blue"},
        {"text": "402", "text_colour": "black"},
    ]
    y = pt.stage_a_labels(items)
    assert y["word"].tolist() == [ti.WORDS.index("stop"), -100, -100]
    assert y["colour"].tolist() == [list(ti.PALETTE).index(c) for c in ("red", "blue", "black")]
    digits = torch.stack([y["hundreds"], y["tens"], y["units"]], 1).tolist()
    assert digits == [[-100] * 3, [10, 10, 7], [4, 0, 2]]


def test_stage_b_reduces_its_loss_and_leaves_the_lm_unchanged(vlm, items):
    model, processor = vlm
    trainable = pt.freeze_language_model(model)
    assert {id(p) for p in trainable} == {
        id(p) for n, p in model.named_parameters() if n.startswith(VISION_PREFIXES)
    }
    frozen = lm_params(model)
    digest = pt.lm_digest(model)
    opt = pt.stage_b_optimizer(model, lr_projector=3e-3, lr_vision=3e-4)
    batch = pt.make_lm_batch(processor, items[:4])
    with torch.no_grad():
        before = float(pt.stage_b_loss(model, batch))
    for _ in range(10):
        opt.zero_grad()
        pt.stage_b_loss(model, batch).backward()
        opt.step()
    with torch.no_grad():
        after = float(pt.stage_b_loss(model, batch))
    assert after < before
    assert all(torch.equal(p, frozen[n]) for n, p in lm_params(model).items())
    assert pt.lm_digest(model) == digest


def test_stage_b_loss_equals_the_models_own_loss(vlm, items):
    model, processor = vlm
    batch = pt.make_lm_batch(processor, items[:4])
    with torch.no_grad():
        ours = pt.stage_b_loss(model, batch)
        theirs = model(**batch).loss
    torch.testing.assert_close(ours, theirs)


def test_labels_cover_only_the_answer_and_newline(vlm, items):
    model, processor = vlm
    tok = processor.tokenizer
    batch = pt.make_lm_batch(processor, items[:6])
    image_id = model.config.image_token_id
    assert len({len(it["answer"]) for it in items[:6]}) > 1  # so some rows are padded
    for i, item in enumerate(items[:6]):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        labelled = labels != -100
        assert tok.decode(labels[labelled]) == " " + item["answer"] + "\n"
        assert torch.equal(ids[labelled], labels[labelled])
        n = int(mask.sum())
        assert not labelled[n:].any()  # padding
        assert bool(mask[:n].all()) and not mask[n:].any()  # right padding
        assert int((ids == image_id).sum()) == VISION.image_tokens
        assert not labelled[ids == image_id].any()  # image tokens
        k = int(labelled.nonzero()[0])  # the labelled tokens are the last real ones
        assert labelled[k:n].all()
        assert tok.decode(ids[:k]).endswith("Answer with a single word or number.\nAnswer:")
        prompt = pt.PROMPT.format(question=item["question"])
        alone = processor(images=[item["image"]], text=[prompt], return_tensors="pt")
        assert ids[:k].tolist() == alone["input_ids"][0].tolist()  # prompt tokenized as at eval


def test_generate_answers_stop_at_newline_and_batching_is_consistent(vlm, items):
    model, processor = vlm
    preds = pt.generate_answers(model, processor, items[:5], max_new_tokens=6, batch=2)
    assert len(preds) == 5 and all("\n" not in p and p == p.strip() for p in preds)
    alone = [pt.generate_answers(model, processor, [it], max_new_tokens=6)[0] for it in items[:5]]
    assert preds == alone
    assert pt.clean_answer(" stop\nmore") in ("stop", "Stop")


def test_batch_order_is_a_pure_function_of_step():
    a = [pt.batch_indices(3, "a", s, 5, 12) for s in range(1, 6)]
    assert a == [pt.batch_indices(3, "a", s, 5, 12) for s in range(1, 6)]
    flat = sum(a, [])
    assert sorted(flat[:12]) == list(range(12))  # first epoch is a permutation
    assert a != [pt.batch_indices(4, "a", s, 5, 12) for s in range(1, 6)]
    assert pt.lr_factor(1, 100) > 0 and pt.lr_factor(100, 100) == pytest.approx(0.1)


# --------------------------------------------------------------------------- the run


def test_pretrain_writes_outputs_and_refuses_a_finished_dir(tmp_path, lm_dir):
    cfg = config(tmp_path, lm_dir)
    torch.set_num_threads(2)
    summary = pt.pretrain(cfg)
    assert torch.get_num_threads() == 2 and summary["torch_threads"] == 1
    out = cfg.output_dir
    assert (
        json.loads((out / "summary.json").read_text())["selected_step"] == summary["selected_step"]
    )
    assert len(summary["loss"]["stage_a"]) == 4 and len(summary["loss"]["stage_b"]) == 4
    assert [e["step"] for e in summary["valid_accuracy"]["evals"]] == [2, 4]
    assert summary["valid_accuracy"]["before"]["n"] == 4
    assert set(summary["valid_accuracy"]["before"]["per_qtype"]) == set(ti.QUESTIONS)
    assert summary["data"]["fingerprint"] == ti.fingerprint(DATA)
    assert summary["wall_s"]["stage_a"] > 0 and summary["wall_s"]["stage_b"] > 0
    assert summary["provenance"]["commit"] == "test"
    assert summary["language_model_unchanged"] is True
    vision, info, tensors = read_vision_weights(out / "vision.safetensors")
    assert vision == VISION and info["selected_step"] == summary["selected_step"]
    assert "loss" not in info and "evals" not in json.dumps(info)
    assert not (out / "checkpoints").exists()
    with pytest.raises(ConfigError, match="new output_dir"):
        pt.pretrain(cfg)


def test_the_written_state_is_the_best_on_valid(tmp_path, lm_dir, monkeypatch):
    scores = iter([0.0, 0.75, 0.25])  # before, step 2, step 4

    def fake_evaluate(model, processor, items, max_new_tokens=8, batch=16):
        return {"overall": next(scores), "per_qtype": {}, "n": len(items), "examples": []}

    states = {}
    real_save = pt._save_checkpoint

    def spy_save(out, state, model, heads, optimizer, best):
        states[(state["stage"], state["step"])] = {
            k: v.clone() for k, v in vision_state(model).items()
        }
        return real_save(out, state, model, heads, optimizer, best)

    monkeypatch.setattr(pt, "valid_exact_match", fake_evaluate)
    monkeypatch.setattr(pt, "_save_checkpoint", spy_save)
    cfg = config(tmp_path, lm_dir)
    summary = pt.pretrain(cfg)
    assert summary["selected_step"] == 2
    assert summary["valid_accuracy"]["best"]["overall"] == 0.75
    _, _, tensors = read_vision_weights(cfg.output_dir / "vision.safetensors")
    assert all(torch.equal(tensors[k], v) for k, v in states[("b", 2)].items())
    assert not all(torch.equal(tensors[k], v) for k, v in states[("b", 4)].items())


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("stage,calls", [("a", 3), ("b", 3)])
def test_resume_after_interruption_matches_an_uninterrupted_run(
    tmp_path, lm_dir, monkeypatch, stage, calls
):
    full = config(tmp_path / "full", lm_dir)
    reference = pt.pretrain(full)
    _, _, expected = read_vision_weights(full.output_dir / "vision.safetensors")

    name = "stage_a_loss" if stage == "a" else "stage_b_loss"
    real = getattr(pt, name)
    count = {"n": 0}

    def dies(*args):
        count["n"] += 1
        if count["n"] == calls:  # killed in step 3: steps 1-2 are checkpointed, 3 is lost
            raise Interrupt
        return real(*args)

    cfg = config(tmp_path / "cut", lm_dir)
    monkeypatch.setattr(pt, name, dies)
    with pytest.raises(Interrupt):
        pt.pretrain(cfg)
    monkeypatch.setattr(pt, name, real)
    names = [p.name for p in (cfg.output_dir / "checkpoints").iterdir()]
    assert names == [f"{stage}-0000002"]
    assert not (cfg.output_dir / "summary.json").exists()

    summary = pt.pretrain(cfg)
    _, _, got = read_vision_weights(cfg.output_dir / "vision.safetensors")
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert summary["loss"] == reference["loss"]
    assert summary["selected_step"] == reference["selected_step"]
    assert summary["sessions"] == 2


def test_resume_with_other_settings_is_refused(tmp_path, lm_dir, monkeypatch):
    cfg = config(tmp_path, lm_dir)
    real = pt.stage_b_loss
    monkeypatch.setattr(pt, "stage_b_loss", lambda *a: (_ for _ in ()).throw(Interrupt()))
    with pytest.raises(Interrupt):
        pt.pretrain(cfg)
    monkeypatch.setattr(pt, "stage_b_loss", real)
    with pytest.raises(ConfigError, match="stage_b_steps: now 6, checkpoint 4"):
        pt.pretrain(replace(cfg, stage_b_steps=6))
    pt.pretrain(replace(cfg, progress=True))  # progress bars may differ


def test_nan_loss_raises_and_keeps_the_last_checkpoint(tmp_path, lm_dir, monkeypatch):
    real = pt.stage_b_loss
    count = {"n": 0}

    def nan_at_3(*args):
        count["n"] += 1
        loss = real(*args)
        return loss * float("nan") if count["n"] == 3 else loss

    monkeypatch.setattr(pt, "stage_b_loss", nan_at_3)
    cfg = config(tmp_path, lm_dir)
    with pytest.raises(pt.NonFiniteLossError, match="step 3.*b-0000002") as exc:
        pt.pretrain(cfg)
    assert "learning rate" in str(exc.value)
    ckpts = sorted(p.name for p in (cfg.output_dir / "checkpoints").iterdir())
    assert ckpts == ["b-0000002"]
    state = json.loads((cfg.output_dir / "checkpoints/b-0000002/state.json").read_text())
    assert len(state["loss_b"]) == 2 and all(v == v for v in state["loss_b"])
    assert not (cfg.output_dir / "vision.safetensors").exists()


def test_no_test_item_is_ever_generated(tmp_path, lm_dir, monkeypatch):
    requested = []
    real_item, real_split = ti.make_item, ti.make_split

    def make_item(config, split, index):
        requested.append(split)
        return real_item(config, split, index)

    def make_split(config, split, n=None):
        requested.append(split)
        return real_split(config, split, n)

    fingerprinted = []
    monkeypatch.setattr(ti, "make_item", make_item)
    monkeypatch.setattr(ti, "make_split", make_split)
    # the data fingerprint (ti.fingerprint, as the lm-eval task records it) hashes the first
    # test images; stubbed here so only pretrain's own data use is recorded
    monkeypatch.setattr(ti, "fingerprint", lambda c: fingerprinted.append(c) or "stub")
    summary = pt.pretrain(config(tmp_path, lm_dir))
    assert "train" in requested and "valid" in requested
    assert set(requested) <= {"train", "valid"}
    assert fingerprinted == [DATA] and summary["data"]["fingerprint"] == "stub"


def test_bad_configs_are_refused(tmp_path, lm_dir):
    with pytest.raises(ConfigError, match="image_size"):
        pt.pretrain(config(tmp_path, lm_dir, data=replace(DATA, image_size=64)))
    with pytest.raises(ConfigError, match="eval_n"):
        pt.pretrain(config(tmp_path, lm_dir, eval_n=5))


def test_init_from_starts_from_an_earlier_runs_vision_side(tmp_path, lm_dir):
    first = config(tmp_path, lm_dir, output_dir=tmp_path / "first")
    pt.pretrain(first)
    start = tmp_path / "first" / "vision.safetensors"
    _, _, start_tensors = read_vision_weights(start)
    # no steps at all: the written vision side must be the starting point, bit for bit
    still = config(
        tmp_path,
        lm_dir,
        output_dir=tmp_path / "still",
        init_from=str(start),
        stage_a_steps=0,
        stage_b_steps=0,
    )
    summary = pt.pretrain(still)
    _, info, tensors = read_vision_weights(tmp_path / "still" / "vision.safetensors")
    assert set(tensors) == set(start_tensors)
    assert all(torch.equal(tensors[k], start_tensors[k]) for k in tensors)
    assert summary["init_from"]["path"] == str(start)
    assert summary["init_from"]["sha256"] == info["init_from"]["sha256"]
    assert len(summary["init_from"]["sha256"]) == 64
    # with steps it moves away from the starting point (and not from the random one)
    moved = pt.pretrain(
        config(tmp_path, lm_dir, output_dir=tmp_path / "moved", init_from=str(start))
    )
    _, _, after = read_vision_weights(tmp_path / "moved" / "vision.safetensors")
    assert moved["valid_accuracy"]["before"] == summary["valid_accuracy"]["before"]
    assert any(not torch.equal(after[k], start_tensors[k]) for k in after)


def test_init_from_refuses_a_missing_or_mismatched_file(tmp_path, lm_dir):
    with pytest.raises(ConfigError, match="init_from .* not found"):
        pt.pretrain(config(tmp_path, lm_dir, init_from=str(tmp_path / "nope.safetensors")))
    pt.pretrain(config(tmp_path, lm_dir, output_dir=tmp_path / "first", stage_b_steps=0))
    other = replace(VISION, hidden_size=VISION.hidden_size * 2)
    with pytest.raises(ConfigError, match="same VisionConfig"):
        pt.pretrain(
            config(
                tmp_path,
                lm_dir,
                output_dir=tmp_path / "other",
                vision=other,
                init_from=str(tmp_path / "first" / "vision.safetensors"),
            )
        )
    assert not (tmp_path / "other" / "summary.json").exists()


# --------------------------------------------------------------------------- named recipes


def test_pretrain_recipes_chain_to_the_run_they_start_from(tmp_path, monkeypatch):
    from t2bench.vlm import recipes
    from t2bench.vlm.models import DEFAULT_PRETRAIN

    assert DEFAULT_PRETRAIN in recipes.PRETRAIN_RECIPES
    for fields in recipes.PRETRAIN_RECIPES.values():  # every start is itself a recipe
        assert fields.get("init_from", "smollm2-vlm") in recipes.PRETRAIN_RECIPES
    calls = []

    def fake_pretrain(cfg):
        calls.append(cfg)
        out = Path(cfg.output_dir)
        out.mkdir(parents=True)
        (out / pt.SUMMARY).write_text(json.dumps({"name": out.name}))
        return {"name": out.name}

    monkeypatch.setattr(pt, "pretrain", fake_pretrain)
    got = recipes.pretrain_recipe(
        "smollm2-vlm-chars", root=tmp_path, num_threads=2, stage_b_steps=5, eval_n=None
    )
    assert got == {"name": "smollm2-vlm-chars"}
    parent, child = calls
    assert parent.output_dir == tmp_path / "smollm2-vlm-a4000"
    assert (parent.stage_a_steps, parent.stage_b_steps, parent.num_threads) == (4000, 200, 2)
    assert parent.init_from is None
    assert child.init_from == str(tmp_path / "smollm2-vlm-a4000" / "vision.safetensors")
    assert (child.stage_a_steps, child.stage_b_steps, child.eval_n) == (4000, 5, 64)
    assert (parent.data.n_train, child.data.n_train) == (10000, 1_000_000)
    assert (parent.char_head, child.char_head) == (False, True)
    # finished recipes are read back, never redone
    assert recipes.pretrain_recipe("smollm2-vlm-chars", root=tmp_path) == got
    assert len(calls) == 2
    with pytest.raises(ConfigError, match="unknown pre-training recipe 'nope'"):
        recipes.pretrain_config("nope")


def test_cli_pretrain_runs_a_named_recipe_with_overrides(tmp_path, monkeypatch, capsys):
    from t2bench.cli import main

    calls = []

    def fake_pretrain(cfg):
        calls.append(cfg)
        acc = {"before": {"overall": 0.0}, "best": {"overall": 0.5}}
        return {"valid_accuracy": acc}

    monkeypatch.setattr(pt, "pretrain", fake_pretrain)
    out = tmp_path / "mine"
    args = ["vlm", "pretrain", "smollm2-vlm", "--out", str(out), "--threads", "2"]
    assert main([*args, "--stage-b-steps", "7", "--lr-projector", "0.002"]) == 0
    (cfg,) = calls
    assert (cfg.output_dir, cfg.num_threads, cfg.stage_b_steps) == (out, 2, 7)
    assert (cfg.lr_projector, cfg.stage_a_steps) == (0.002, 1200)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "smollm2-vlm": {"before": 0.0, "best": 0.5}
    }
    assert main(["vlm", "pretrain", "smollm2-vlm", "smollm2-vlm-a4000", "--out", "x"]) == 2


def test_a_rendered_train_split_trains_exactly_like_a_held_one(tmp_path, lm_dir, monkeypatch):
    held = pt.pretrain(config(tmp_path, lm_dir, output_dir=tmp_path / "held"))
    monkeypatch.setattr(pt, "MATERIALISE_LIMIT", DATA.n_train - 1)
    made = []
    real = ti.make_split
    monkeypatch.setattr(ti, "make_split", lambda c, s, n=None: made.append(s) or real(c, s, n))
    rendered = pt.pretrain(config(tmp_path, lm_dir, output_dir=tmp_path / "rendered"))
    assert made == ["valid"]  # the train split was never built as a whole
    assert rendered["loss"] == held["loss"]
    _, _, a = read_vision_weights(tmp_path / "held" / "vision.safetensors")
    _, _, b = read_vision_weights(tmp_path / "rendered" / "vision.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    split = ti.RenderedSplit(DATA, "train")
    assert len(split) == DATA.n_train and split[3]["id"] == ti.make_item(DATA, "train", 3)["id"]
    with pytest.raises(IndexError, match="out of range"):
        split[DATA.n_train]


def test_the_no_character_class_is_down_weighted(vlm, items):
    model, processor = vlm
    torch.manual_seed(0)
    heads = pt.AuxHeads(VISION.hidden_size, chars=True)
    batch = items[:4]
    pixels = pt.pixel_values(processor, batch)
    labels = pt.stage_a_labels(batch, (VISION.image_size, VISION.patch_size))
    assert 0 < int((labels["chars"] != 0).sum()) < labels["chars"].numel()
    with torch.no_grad():
        _, parts = pt.stage_a_loss(model, heads, pixels, labels)
        logits = heads(ob.vision_features(model, pixels))["chars"].flatten(0, 1)
    per = F.cross_entropy(logits, labels["chars"].flatten(), reduction="none")
    w = torch.where(labels["chars"].flatten() == 0, ob.CHAR_NONE_WEIGHT, 1.0)
    assert parts["chars"] == pytest.approx(float((w * per).sum() / w.sum()), rel=1e-5)
    assert parts["chars"] != pytest.approx(float(per.mean()), rel=1e-3)


def test_vlm_group_recipes_take_the_text_experts_signal_into_their_own_folder(
    tmp_path, monkeypatch
):
    from t2bench.train.config import TrainConfig
    from t2bench.vlm import recipes

    svf = TrainConfig(**recipes.vlm_recipe("vqa-svf-pg", "cpu-groups"))
    lora = TrainConfig(**recipes.vlm_recipe("vqa-lora-ntp", "cpu-groups"))
    assert (svf.group_size, svf.advantage, svf.stop_without_signal) == (4, "group_whiten", 10)
    assert svf.reward_wrong == -0.1 and svf.layers == "even"  # the paper's VLM recipe kept
    samples = {c.steps * c.global_batch for c in (svf, lora)}
    old = recipes.vlm_recipe("vqa-svf-pg", "cpu")
    assert samples == {4800} and 4800 >= 6 * old["steps"] * old["global_batch"]
    assert recipes.PROFILE_DIRS["cpu-groups"] != recipes.EXPERTS_DIR  # never into old runs
    trained = []
    monkeypatch.setattr("t2bench.train.trainer.train", lambda cfg: trained.append(cfg.output_dir))
    monkeypatch.setitem(recipes.PROFILE_DIRS, "cpu-groups", tmp_path / "groups")
    (tmp_path / "groups").mkdir()  # the trainer makes it; the fake here does not
    recipes.train_vlm_recipes(["vqa-svf-pg"], profile="cpu-groups")
    assert trained == [str(tmp_path / "groups" / "vqa-svf-pg")]
