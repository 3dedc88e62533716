"""SEAL: self-edit parsing, inner updates (LoRA / SVF), ReST-EM and the evaluations, on a
tiny seeded character-level Llama."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_seal_config

from t2bench.errors import ConfigError
from t2bench.seal.inner import (
    InnerConfig,
    InnerUpdateDivergedError,
    InnerUpdater,
    encode_sequences,
    token_loss,
)
from t2bench.seal.passages import QA, Passage
from t2bench.seal.selfedit import (
    EmptySelfEditError,
    generate_self_edits,
    parse_self_edit,
    selfedit_prompt,
    training_sequences,
)


def _passages(n: int = 2) -> list[Passage]:
    names = ["Zor", "Quen", "Mab"]
    return [
        Passage(
            uid=f"t-{i}",
            title=names[i],
            text=f"{names[i]} is a town. Its river is Lo{i}.",
            questions=(QA(f"What river has {names[i]}?", (f"Lo{i}",)),),
            source="fictional",
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def loaded(char_llama_dir):
    from t2bench.models import load_model

    return load_model(char_llama_dir)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- self-edits


def test_parse_self_edit_strips_markers_dedupes_and_drops_fragments():
    text = "1. Zor is a town.\n- Zor is a town.\n\n* ok\n2) The river of Zor is Lo.\n• Lo flows."
    assert parse_self_edit(text, min_chars=6) == [
        "Zor is a town.",
        "The river of Zor is Lo.",
        "Lo flows.",
    ]
    assert parse_self_edit(text, min_chars=6, max_lines=1) == ["Zor is a town."]


@pytest.mark.parametrize("text", ["", "\n\n  \n", "- a\n- b", "ok\nok"])
def test_empty_self_edit_is_a_clear_error(text):
    with pytest.raises(EmptySelfEditError, match="no usable line"):
        parse_self_edit(text)


def test_prompt_and_training_sequences():
    p = _passages(1)[0]
    for variant in ("implications", "rewrite", "qa"):
        prompt = selfedit_prompt(p, variant)
        assert p.title in prompt and p.text in prompt
    with pytest.raises(ConfigError, match="unknown self-edit variant"):
        selfedit_prompt(p, "poem")
    seqs = training_sequences(p, ["Zor has the river Lo0."])
    assert seqs == ["Zor\nZor has the river Lo0.", f"Zor\n{p.text}"]
    with pytest.raises(EmptySelfEditError):
        training_sequences(p, [], include_passage=False)


def test_self_edit_sampling_is_seeded(loaded):
    ps = _passages(2)
    kw = dict(k=2, max_new_tokens=12)
    a = generate_self_edits(loaded.model, loaded.tokenizer, ps, seed=0, **kw)
    b = generate_self_edits(loaded.model, loaded.tokenizer, ps, seed=0, batch=1, **kw)
    c = generate_self_edits(loaded.model, loaded.tokenizer, ps, seed=1, **kw)
    assert [len(x) for x in a] == [2, 2]
    assert a == b  # the batch size does not change what is sampled
    assert a != c
    with pytest.raises(ConfigError, match="k=1"):
        generate_self_edits(loaded.model, loaded.tokenizer, ps, k=2, temperature=0)


# ---------------------------------------------------------------- inner update


def test_padding_never_enters_the_loss(loaded):
    tok = loaded.tokenizer
    texts = ["Zor is a town.", "Quen has a long river called Lo."]
    ids, mask, labels = encode_sequences(tok, texts, 256)
    assert tok.pad_token_id == tok.eos_token_id  # the case that needs the attention mask
    assert torch.equal(labels == -100, mask == 0)
    # every sequence ends with an EOS that is a target
    for row, m in zip(labels, mask, strict=True):
        assert row[int(m.sum()) - 1] == tok.eos_token_id
    with torch.no_grad():
        batch = token_loss(loaded.model(input_ids=ids, attention_mask=mask).logits, labels)
        total, count = 0.0, 0
        for t in texts:
            i, m, lab = encode_sequences(tok, [t], 256)
            n = int((lab[:, 1:] != -100).sum())
            total += float(token_loss(loaded.model(input_ids=i, attention_mask=m).logits, lab)) * n
            count += n
    assert float(batch) == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("method", ["lora", "svf"])
def test_inner_update_applies_learns_and_restores(char_llama_dir, method, dtype):
    """Also on a model cast to bf16 (the SEAL tables' seal_compute_dtype): what is trained
    stays fp32 (peft's LoRA matrices; z, with SVF's change to W formed in bf16)."""
    from t2bench.models import load_model

    loaded = load_model(char_llama_dir)
    model, tok = loaded.model.to(dtype), loaded.tokenizer
    before = _weights(model)
    seqs = training_sequences(_passages(1)[0], ["Zor has the river Lo0."])
    ids, mask, _ = encode_sequences(tok, seqs, 256)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    cfg = InnerConfig(method=method, steps=6, lr=1e-2 if method == "lora" else 5e-2)
    updater = InnerUpdater(model, tok, cfg)
    with updater.updated(seqs) as (m, result):
        trained = [p for p in m.parameters() if p.requires_grad]
        with torch.no_grad():
            inside = m(input_ids=ids, attention_mask=mask).logits
    assert len(result.losses) == 6 and result.losses[-1] < result.losses[0]
    assert result.trainable > 0
    if method == "lora":
        assert trained and all(p.dtype == torch.float32 for p in trained)
    else:
        policy, _ = updater._train_svf(seqs)
        assert policy.delta_dtype == dtype
        assert all(z.dtype == torch.float32 for z in policy.z().values())
    assert not torch.allclose(inside.float(), ref.float())
    assert _same(before, _weights(model))  # restored exactly, no adapter modules left
    assert not any("lora" in n for n, _ in model.named_modules())
    assert all(p.dtype == dtype for p in model.parameters())


@pytest.mark.parametrize("method", ["lora", "svf"])
def test_merge_into_bf16_weights_is_refused(char_llama_dir, method):
    from t2bench.models import load_model

    loaded = load_model(char_llama_dir)
    model = loaded.model.to(torch.bfloat16)
    before = _weights(model)
    updater = InnerUpdater(model, loaded.tokenizer, InnerConfig(method=method, steps=1))
    with pytest.raises(ConfigError, match="load the model in float32"):
        updater.merge(["Zor\nZor has the river Lo0."])
    assert _same(before, _weights(model))


@pytest.mark.parametrize("method", ["lora", "svf"])
def test_merge_writes_the_update_into_the_weights(char_llama_dir, method):
    from t2bench.models import load_model

    loaded = load_model(char_llama_dir)
    before = _weights(loaded.model)
    updater = InnerUpdater(
        loaded.model, loaded.tokenizer, InnerConfig(method=method, steps=3, lr=5e-2)
    )
    updater.merge(["Zor\nZor has the river Lo0."])
    after = _weights(loaded.model)
    assert not _same(before, after)
    assert not any("lora" in n for n, _ in loaded.model.named_modules())
    if method == "svf":  # the kept decomposition still describes the merged weights
        d = updater._decompose()
        params = dict(loaded.model.named_parameters())
        for t in d.targets:
            svd = d.svd[t.key]
            rebuilt = (svd.U * svd.S) @ svd.Vh
            assert torch.allclose(rebuilt, params[f"{t.module_name}.weight"], atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "svf"])
def test_diverging_inner_update_is_refused_and_restores_the_model(loaded, method, monkeypatch):
    import t2bench.seal.inner as inner

    real, calls = inner.token_loss, []

    def exploding(logits, labels):  # the third step's loss is not finite
        calls.append(1)
        return real(logits, labels) * (float("nan") if len(calls) == 3 else 1.0)

    monkeypatch.setattr(inner, "token_loss", exploding)
    before = _weights(loaded.model)
    updater = InnerUpdater(loaded.model, loaded.tokenizer, InnerConfig(method=method, steps=6))
    with pytest.raises(InnerUpdateDivergedError, match="step 3/6.*lower the inner lr"):
        with updater.updated(["Zor\nZor is a town with a river."]):
            pass
    assert _same(before, _weights(loaded.model))
    assert not any("lora" in n for n, _ in loaded.model.named_modules())


def test_a_growing_loss_counts_as_diverged(loaded):
    cfg = InnerConfig(method="lora", steps=6, lr=1e5, grad_clip=0, diverge_factor=1.5)
    with pytest.raises(InnerUpdateDivergedError, match="diverged"):
        with InnerUpdater(loaded.model, loaded.tokenizer, cfg).updated(["Zor\nZor is a town."]):
            pass


def test_inner_config_errors():
    with pytest.raises(ConfigError, match="unknown inner method"):
        InnerConfig(method="full")
    with pytest.raises(ConfigError, match="steps"):
        InnerConfig(steps=0)
    assert InnerConfig(method="svf").learning_rate > InnerConfig().learning_rate


# ---------------------------------------------------------------- evaluations


def test_conditions_and_a_diverged_update_is_recorded(loaded):
    from t2bench.seal.experiment import edit_sequences, evaluate_condition

    ps = _passages(2)
    tok = loaded.tokenizer
    base_edits = edit_sequences(loaded.model, tok, ps, "base", variant="implications", seed=0)
    assert all(e["sequences"] == [] for e in base_edits)
    passage = edit_sequences(loaded.model, tok, ps, "passage", variant="implications", seed=0)
    assert [e["sequences"] for e in passage] == [[f"{p.title}\n{p.text}"] for p in ps]
    own = edit_sequences(
        loaded.model, tok, ps, "self-edit", variant="qa", seed=0, max_new_tokens=16
    )
    assert all(e["sequences"][-1] == f"{p.title}\n{p.text}" for e, p in zip(own, ps, strict=True))
    assert all(isinstance(e["self_edit"], str) for e in own)
    with pytest.raises(ConfigError, match="unknown condition"):
        edit_sequences(loaded.model, tok, ps, "oracle", variant="qa", seed=0)

    base = evaluate_condition(loaded.model, tok, ps, base_edits, None)
    assert len(base["records"]) == 2 and {"contains", "em", "f1"} <= set(base["records"][0])
    bad = InnerConfig(steps=4, lr=1e5, grad_clip=0, diverge_factor=1.5)
    r = evaluate_condition(loaded.model, tok, ps, passage, bad)
    assert len(r["records"]) == 2
    assert all("diverged" in p for p in r["passages"])


@pytest.mark.parametrize("method", ["lora", "svf"])
def test_sequential_edits_fill_a_triangle(char_llama_dir, method):
    from t2bench.models import load_model
    from t2bench.seal.experiment import edit_sequences, sequential_edits

    loaded = load_model(char_llama_dir)
    ps = _passages(3)
    edits = edit_sequences(loaded.model, loaded.tokenizer, ps, "passage", variant="qa", seed=0)
    before = _weights(loaded.model)
    out = sequential_edits(
        loaded.model, loaded.tokenizer, ps, edits, InnerConfig(method=method, steps=2, lr=1e-2)
    )
    assert [len(row) for row in out["matrix"]] == [1, 2, 3]
    assert len(out["before"]) == 3 and len(out["merge_seconds"]) == 3
    assert not _same(before, _weights(loaded.model))


# ---------------------------------------------------------------- ReST-EM


def _seal_cfg(tmp_path, model_dir, **kw):
    return tiny_seal_config(model_dir, tmp_path / "run", **kw)


@pytest.fixture
def fake_rewards(monkeypatch):
    """Passages from _passages; rewards that prefer longer self-edits, baseline 0."""
    import t2bench.seal.restem as restem

    monkeypatch.setattr(restem, "load_passages", lambda source, split, n, seed: _passages(n))
    monkeypatch.setattr(restem, "closed_book", lambda *a, **k: [{"contains": False}])

    def score(updater, tok, passage, text, *, qa_max_new_tokens):
        return {"reward": min(1.0, len(text) / 100) or None}

    monkeypatch.setattr(restem, "score_self_edit", score)


def test_restem_keeps_the_best_edit_trains_the_generator_and_resumes(
    tmp_path, char_llama_dir, fake_rewards
):
    from t2bench.models import load_model
    from t2bench.seal.restem import RECORDS, load_generator, round_adapter, train_seal

    cfg = _seal_cfg(tmp_path, char_llama_dir)
    summary = train_seal(cfg)
    run = tmp_path / "run"
    records = [json.loads(x) for x in (run / RECORDS).read_text().splitlines()]
    assert [(r["round"], r["uid"]) for r in records] == [
        (1, "t-0"),
        (1, "t-1"),
        (2, "t-0"),
        (2, "t-1"),
    ]
    for r in records:
        valid = [v for v in r["rewards"] if v is not None]
        if valid and max(valid) > 0:
            assert r["rewards"][r["kept"]] == max(valid)
    assert summary["rounds"][0]["kept"] >= 1
    assert round_adapter(run, 1).joinpath("adapter_config.json").is_file()
    base = _weights(load_model(char_llama_dir).model)
    g1 = _weights(load_generator(run, 1).model)
    assert not _same(base, g1)  # the kept pairs changed the generator
    with pytest.raises(ConfigError, match="finished SEAL run"):
        train_seal(cfg)

    # an interrupted run: the last passage, round 2's adapter and the summary are gone
    lines = (run / RECORDS).read_text().splitlines()
    (run / RECORDS).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # cut line
    import shutil

    shutil.rmtree(round_adapter(run, 2).parent)
    (run / "summary.json").unlink()
    train_seal(cfg)
    again = (run / RECORDS).read_text().splitlines()
    assert again[:3] == lines[:3] and len(again) == 4  # the cut line is dropped and redone
    assert json.loads(again[-1])["uid"] == "t-1"

    other = _seal_cfg(tmp_path, char_llama_dir, k=3)
    (run / "summary.json").unlink()
    with pytest.raises(ConfigError, match="other settings"):
        train_seal(other)


def test_restem_rewards_are_real_and_an_empty_self_edit_scores_nothing(loaded):
    from t2bench.seal.restem import score_self_edit

    updater = InnerUpdater(loaded.model, loaded.tokenizer, InnerConfig(steps=2, lr=1e-2))
    p = _passages(1)[0]
    empty = score_self_edit(updater, loaded.tokenizer, p, "\n \n", qa_max_new_tokens=4)
    assert empty["reward"] is None and "EmptySelfEditError" in empty["error"]
    ok = score_self_edit(
        updater, loaded.tokenizer, p, "Zor has the river Lo0.", qa_max_new_tokens=4
    )
    assert ok["reward"] in (0.0, 1.0) and ok["lines"] == 1 and len(ok["inner"]["losses"]) == 2


# ---------------------------------------------------------------- CLI


def test_cli_evaluate_and_bad_passages(tmp_path, char_llama_dir, capsys):
    from t2bench.cli import main

    good = tmp_path / "p.jsonl"
    good.write_text(
        json.dumps(
            {
                "title": "Zor",
                "text": "Zor is a town. Its river is Lo.",
                "questions": [{"question": "What river has Zor?", "answers": ["Lo"]}],
            }
        )
        + "\n"
    )
    args = [
        "seal",
        "evaluate",
        "--data",
        str(good),
        "--model",
        char_llama_dir,
        "--condition",
        "passage",
        "--inner-steps",
        "2",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 1 and out["condition"] == "passage"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"title": "Zor", "text": "Zor is a town.", "questions": []}) + "\n")
    assert main(["seal", "evaluate", "--data", str(bad), "--model", char_llama_dir]) == 2
    assert "has no questions" in capsys.readouterr().err
