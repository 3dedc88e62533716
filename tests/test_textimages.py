"""Tests for the generated text-in-image VQA data (t2bench.tasks.textimages) and the lm-eval
task ``t2vqa_text`` (tasks/t2vqa_text.yaml, tasks/vlm_utils.py, t2bench.tasks.t2vqa)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from t2bench.tasks import textimages as ti
from t2bench.tasks.textimages import TextImageConfig

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "tasks"
SMALL = TextImageConfig(n_train=200, n_valid=20, n_test=50)


def _pixels(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def sample():
    """40 items from every split."""
    return [ti.make_item(SMALL, split, i) for split in ti.SPLITS for i in range(40)]


def _vlm_utils():
    """tasks/vlm_utils.py as lm-eval loads it: a module imported from its file path."""
    spec = importlib.util.spec_from_file_location(
        "t2bench_test_vlm_utils", TASKS_DIR / "vlm_utils.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- determinism


def test_same_item_twice_is_identical_and_indices_differ():
    a, b = ti.make_item(SMALL, "test", 7), ti.make_item(SMALL, "test", 7)
    assert a["image"].tobytes() == b["image"].tobytes()
    assert {k: v for k, v in a.items() if k != "image"} == {
        k: v for k, v in b.items() if k != "image"
    }
    c = ti.make_item(SMALL, "test", 8)
    assert a["image"].tobytes() != c["image"].tobytes()
    assert a["image"].mode == "RGB" and a["image"].size == (96, 96)


def test_item_does_not_depend_on_split_length_or_order():
    items = ti.make_split(SMALL, "valid", 6)
    alone = ti.make_item(SMALL, "valid", 5)
    assert [it["id"] for it in items] == [f"valid-{i:05d}" for i in range(6)]
    assert items[5]["image"].tobytes() == alone["image"].tobytes()
    assert len(ti.make_split(SMALL, "valid")) == SMALL.n_valid


def test_items_are_reproducible_in_a_fresh_process():
    expected = [_pixels(ti.make_item(SMALL, "test", i)["image"]) for i in range(3)]
    code = (
        "import hashlib; from t2bench.tasks import textimages as ti;"
        "c = ti.TextImageConfig(n_train=200, n_valid=20, n_test=50);"
        "print(*[hashlib.sha256(ti.make_item(c, 'test', i)['image'].tobytes()).hexdigest()"
        " for i in range(3)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
        cwd=REPO,
    )
    assert out.stdout.split() == expected


def test_seed_changes_items_and_fingerprint():
    other = replace(SMALL, seed=1)
    assert ti.fingerprint(SMALL) == ti.fingerprint(replace(SMALL))
    assert ti.fingerprint(other) != ti.fingerprint(SMALL)
    assert len(ti.fingerprint(SMALL)) == 64
    assert _pixels(ti.make_item(other, "test", 0)["image"]) != _pixels(
        ti.make_item(SMALL, "test", 0)["image"]
    )
    meta = ti.dataset_metadata(SMALL)
    assert meta["fonts"] == list(ti.available_fonts()) and meta["fonts"][-1] == "PillowDefault"
    assert meta["config"]["seed"] == 0 and meta["fingerprint"] == ti.fingerprint(SMALL)


# --------------------------------------------------------------------------- splits


def test_train_and_test_are_disjoint():
    train = ti.make_split(SMALL, "train", 100)
    test = ti.make_split(SMALL, "test", 100)
    train_hashes = {_pixels(it["image"]) for it in train}
    test_hashes = {_pixels(it["image"]) for it in test}
    assert len(test_hashes) == 100  # also no duplicate inside the sample
    assert not train_hashes & test_hashes
    assert not {it["id"] for it in train} & {it["id"] for it in test}
    # the split stamp that makes byte-identical images across splits impossible
    for split, items in (("train", train), ("test", test)):
        codes = {np.asarray(it["image"])[0, 0, 2] & 3 for it in items}
        assert codes == {ti.SPLIT_CODES[split]}


def test_unknown_split_and_bad_config_are_rejected():
    with pytest.raises(ValueError, match="unknown split"):
        ti.make_item(SMALL, "validation", 0)
    with pytest.raises(ValueError, match="min_font"):
        TextImageConfig(min_font=20, max_font=10)


# --------------------------------------------------------------------------- rendering


def test_text_fits_inside_the_image(sample):
    size = SMALL.image_size
    for it in sample:
        x0, y0, x1, y1 = it["bbox"]
        assert ti.MARGIN <= x0 < x1 <= size - ti.MARGIN, it["id"]
        assert ti.MARGIN <= y0 < y1 <= size - ti.MARGIN, it["id"]
        # every pixel the text changed lies in the bbox (1 px of anti-aliasing allowed)
        bg = ti.background_array(it["background"], size).astype(int)
        changed = np.abs(np.asarray(it["image"]).astype(int) - bg).max(axis=2) > 0
        ys, xs = np.nonzero(changed)
        assert len(xs) > 20, f"{it['id']}: text not drawn"
        assert xs.min() >= x0 - 1 and xs.max() <= x1, it["id"]
        assert ys.min() >= y0 - 1 and ys.max() <= y1, it["id"]
        assert ti.SMALLEST_FONT <= it["font_size"] <= SMALL.max_font


def test_text_contrasts_with_every_background_pixel(sample):
    for it in sample:
        bg = ti.background_array(it["background"], SMALL.image_size).astype(float)
        bg_luma = (0.2126 * bg[..., 0] + 0.7152 * bg[..., 1] + 0.0722 * bg[..., 2]) / 255
        r, g, b = ti.PALETTE[it["text_colour"]]
        text_luma = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
        assert np.abs(bg_luma - text_luma).min() >= ti.MIN_CONTRAST, it["id"]
        assert it["contrast"] >= ti.MIN_CONTRAST


def test_rendering_varies(sample):
    assert len({it["font"] for it in sample}) >= 4
    assert len({it["font_size"] for it in sample}) >= 6
    assert {it["background"]["kind"] for it in sample} == {"solid", "gradient", "noise"}
    assert len({it["text_colour"] for it in sample}) >= 6
    assert len({tuple(it["bbox"][:2]) for it in sample}) >= 60


# --------------------------------------------------------------------------- content


def test_questions_and_answers(sample):
    assert {it["qtype"] for it in sample} == {"word", "number", "colour"}
    for it in sample:
        assert it["answers"] == [it["answer"]] * 10
        assert it["question"] == ti.QUESTIONS[it["qtype"]]
        if it["qtype"] == "word":
            assert it["answer"] in ti.WORDS and it["text"].lower() == it["answer"]
        elif it["qtype"] == "number":
            assert it["text"] == it["answer"] and 0 <= int(it["answer"]) <= 999
        else:
            assert it["answer"] == it["text_colour"] and it["answer"] in ti.PALETTE
        assert ti.item_content(SMALL, it["id"].split("-")[0], int(it["id"].split("-")[1])) == {
            k: it[k] for k in ("question", "answer", "answers", "qtype", "text", "text_colour")
        }


def test_word_list():
    assert len(ti.WORDS) == len(set(ti.WORDS)) >= 55
    assert all(3 <= len(w) <= 7 and w.isalpha() and w.islower() for w in ti.WORDS)
    assert not set(ti.WORDS) & set(ti.PALETTE)


def test_chance_accuracy_small_config():
    res = ti.chance_accuracy(SMALL)
    assert set(res) == {"split", "overall", "per_qtype", "majority_answer", "counts"}
    assert set(res["per_qtype"]) == set(res["majority_answer"]) == {"word", "number", "colour"}
    assert sum(res["counts"].values()) == SMALL.n_test
    assert all(0.0 <= v <= 1.0 for v in [res["overall"], *res["per_qtype"].values()])
    weighted = sum(res["per_qtype"][q] * res["counts"][q] for q in res["counts"]) / SMALL.n_test
    assert res["overall"] == pytest.approx(weighted)
    # the majority colour really is the most frequent colour answer on train
    colours = [
        c["answer"]
        for c in (ti.item_content(SMALL, "train", i) for i in range(SMALL.n_train))
        if c["qtype"] == "colour"
    ]
    assert colours.count(res["majority_answer"]["colour"]) == max(map(colours.count, colours))
    assert res["overall"] < 0.25  # a constant answer cannot read the image


# --------------------------------------------------------------------------- export


def test_save_split_writes_and_refuses_existing_folder(tmp_path):
    from PIL import Image

    out = ti.save_split(SMALL, "test", tmp_path / "t", n=3)
    lines = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [x["file_name"] for x in lines] == [f"test-{i:05d}.png" for i in range(3)]
    with Image.open(out / lines[2]["file_name"]) as im:
        assert im.tobytes() == ti.make_item(SMALL, "test", 2)["image"].tobytes()
    assert json.loads((out / "generator.json").read_text())["fingerprint"] == ti.fingerprint(SMALL)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(FileExistsError, match="never overwrites"):
        ti.save_split(SMALL, "test", out, n=1)
    assert sorted(p.name for p in out.iterdir()) == before


def test_to_hf_dataset():
    ds = ti.to_hf_dataset(SMALL, "valid", n=4)
    assert len(ds) == 4 and ds.split == "valid"
    assert type(ds.features["image"]).__name__ == "Image"
    assert ds[3]["image"].tobytes() == ti.make_item(SMALL, "valid", 3)["image"].tobytes()
    assert json.loads(ds.info.description)["fingerprint"] == ti.fingerprint(SMALL)


# --------------------------------------------------------------------------- lm-eval task


def test_yaml_is_listed_by_lm_eval():
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert "t2vqa_text" in tm.all_tasks
    hf_vlms = Path(lm_eval.__file__).parent / "models" / "hf_vlms.py"
    assert 'DEFAULT_IMAGE_PLACEHOLDER = "<image>"' in hf_vlms.read_text()


def test_load_t2vqa_hook():
    from datasets import DatasetDict
    from PIL import Image

    dd = _vlm_utils().load_t2vqa(n_test=5, n_valid=2, version=1.0, pretrained="ignored")
    assert isinstance(dd, DatasetDict) and set(dd) == {"valid", "test"}
    assert dd["test"].num_rows == 5 and dd["valid"].num_rows == 2
    image = dd["test"][4]["image"]
    assert isinstance(image, Image.Image) and image.size == (96, 96) and image.mode == "RGB"
    assert dd["test"][4]["id"] == "test-00004"


def test_task_builds_multimodal_requests():
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    tm = TaskManager(
        include_path=str(TASKS_DIR),
        include_defaults=False,
        metadata={"n_test": 3, "n_valid": 2, "image_size": 64},
    )
    task = tm.load(["t2vqa_text"])["tasks"]["t2vqa_text"]
    docs = list(task.test_docs())
    assert len(docs) == 3 and len(task.validation_docs()) == 2
    doc = docs[0]
    ctx = task.doc_to_text(doc)
    assert (
        ctx == f"<image>Question: {doc['question']}\nAnswer with a single word or number.\nAnswer:"
    )
    inst = task.construct_requests(doc, ctx, metadata=("t2vqa_text", 0, 1))
    inst = inst[0] if isinstance(inst, list) else inst
    assert inst.request_type == "generate_until"
    gen_kwargs, visual = inst.arguments[1], inst.arguments[2]["visual"]
    assert gen_kwargs["until"] == ["\n"] and gen_kwargs["max_gen_toks"] == 8
    assert gen_kwargs["do_sample"] is False
    assert len(visual) == 1 and visual[0].size == (64, 64)
    assert task.doc_to_target(doc) == doc["answer"]


def test_process_results_wiring(monkeypatch):
    """With a stand-in metric module: cleaned prediction and the ten answers reach vqa_accuracy."""
    calls = []
    stub = types.ModuleType("t2bench.tasks.vqa_metric")
    stub.clean_prediction = lambda s: s.strip().rstrip(".")
    stub.vqa_accuracy = lambda p, answers: calls.append((p, answers)) or 0.25
    monkeypatch.setitem(sys.modules, "t2bench.tasks.vqa_metric", stub)
    doc = ti.item_content(SMALL, "test", 0)
    out = _vlm_utils().t2vqa_process_results(doc, [f" {doc['answer'].upper()}."])
    assert out == {"vqa_accuracy": 0.25, "exact_match": 1.0}
    assert calls == [(doc["answer"].upper(), doc["answers"])]
    assert _vlm_utils().t2vqa_process_results(doc, ["zzz"])["exact_match"] == 0.0


def test_process_results_with_real_metric():
    pytest.importorskip("t2bench.tasks.vqa_metric", reason="vqa_metric not written yet")
    utils = _vlm_utils()
    doc = ti.item_content(SMALL, "test", 0)
    right = utils.t2vqa_process_results(doc, [f" {doc['answer']}\n"])
    wrong = utils.t2vqa_process_results(doc, ["definitely not it"])
    assert right == {"vqa_accuracy": 1.0, "exact_match": 1.0}
    assert wrong == {"vqa_accuracy": 0.0, "exact_match": 0.0}
