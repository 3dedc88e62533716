"""Held-out comparison of trained adapters: each variant vs the base model on the same items.

Items come from the task's *test* split only (never used for training, checkpoint selection or
tuning; see :mod:`t2bench.data.splits`), a seeded sample of ``n`` of them. Every variant answers
the same items with greedy decoding and the same generation budget, and is scored by the
task's reward function, so the per-item results are paired. The difference to the base model
is reported with Newcombe's paired 95% score interval and McNemar's exact p
(:func:`t2bench.core.stats.paired_difference`; not zero-width when no item changed), and the
record states the comparison's minimum detectable difference. Its provenance names the commit,
the base weights' sha256, the seed, the split and the sha256 of the item uids.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from t2bench.core.io import file_sha256, new_record_with_markdown, results_path
from t2bench.core.provenance import git_commit, items_sha256, provenance
from t2bench.core.stats import accuracy, power_record
from t2bench.core.stats import paired_difference as paired
from t2bench.core.tables import markdown_rows, power_line
from t2bench.data.splits import TrainItem, load_splits
from t2bench.errors import ConfigError
from t2bench.generation import DEFAULT_NEW_TOKENS, encode_items, generate
from t2bench.models import model_fingerprint
from t2bench.svf import SVFPatcher, TargetSpec, decompose, load_expert
from t2bench.train import rewards as rw
from t2bench.train.recipes import in_place_of

#: Variant suffixes in table order (the base model comes first).
ORDER = ("svf-pg", "lora-ntp", "lora-pg", "ia3-ntp")


@dataclass
class Variant:
    name: str  # "base" or the run name, e.g. "math-svf-pg"
    kind: str  # base | svf | peft
    path: Path | None = None


def greedy_correct(
    model,
    tokenizer,
    items: list[TrainItem],
    task: str,
    *,
    max_new_tokens: int,
    batch: int,
    progress: bool = False,
    desc: str = "eval",
    processor=None,
) -> list[bool]:
    """Greedy answers of ``model`` to ``items``, scored by the task's reward (one bool each)."""
    correct: list[bool] = []
    for i in tqdm(range(0, len(items), batch), desc=desc, disable=not progress, leave=False):
        chunk = items[i : i + batch]
        ids, pixels = encode_items(tokenizer, chunk, processor)
        roll = generate(model, tokenizer, ids, max_new_tokens=max_new_tokens, pixel_values=pixels)
        correct += rw.score(task, roll.texts, chunk)[1]
    return correct


def paired_difference(base: list[bool], other: list[bool], level: float = 0.95) -> dict:
    """Mean of other − base over paired items with Newcombe's paired 95% score interval and
    McNemar's exact p (:func:`t2bench.core.stats.paired_difference`); ``mcnemar_p`` repeats
    ``p`` for readers of older records."""

    out = paired([int(x) for x in base], [int(x) for x in other], level=level)
    out["mcnemar_p"] = out["p"]
    return out


def heldout_items(
    task: str, n: int, seed: int = 0, difficulty: str = "default"
) -> tuple[list[TrainItem], dict]:
    """A seeded sample of ``n`` items of the task's test split, in split order
    (``difficulty="mix"``: the test split of the math difficulty mix, 1200 items)."""
    splits = load_splits(task, seed=0, difficulty=difficulty)
    test = splits.test
    if n <= 0 or n > len(test):
        raise ConfigError(f"n must be between 1 and {len(test)} (the {task} test split), got {n}")
    idx = sorted(random.Random(f"heldout:{seed}").sample(range(len(test)), n))
    desc = {
        "task": task,
        "split": "test",
        "test_items": len(test),
        "difficulty": difficulty,
        "n": n,
        "sample_seed": seed,
        "source": splits.description.get("splits", {}).get("test", {}).get("source"),
    }
    return [test[i] for i in idx], desc


def _real_path(path: Path) -> Path:
    """``path`` with symlinks resolved (a run folder linked into ``--runs`` is recorded where
    it really is), relative to the working directory where it lies below it."""
    real = path.resolve()
    try:
        return real.relative_to(Path.cwd().resolve())
    except ValueError:
        return real


def table_order(task: str):
    """Sort key of variant names in table order: the base model, then :data:`ORDER`'s
    methods, then any other run (e.g. a no-signal fallback)."""
    rank = {"base": -1} | {f"{task}-{s}": i for i, s in enumerate(ORDER)}
    return lambda name: rank.get(name, len(ORDER))


def discover(task: str, runs: Path) -> list[Variant]:
    """Finished runs of ``task`` under ``runs`` (folders with summary.json), in table order."""
    found = {}
    for summary in sorted(Path(runs).glob(f"{task}-*/summary.json")):
        info = json.loads(summary.read_text())
        art = Path(info["artifact"])
        if (summary.parent / art.name).exists():  # the artifact beside its summary wins
            art = _real_path(summary.parent / art.name)
        kind = "svf" if art.suffix == ".safetensors" else "peft"
        found[info["run"]] = Variant(info["run"], kind, art)
    key = table_order(task)
    return [Variant("base", "base")] + sorted(found.values(), key=lambda v: key(v.name))


def score_variant(
    variant: Variant,
    model_name,
    items,
    task,
    new_tokens,
    batch,
    applied: dict | None = None,
    compute_dtype: str = "float32",
) -> list[bool]:
    """Greedy correctness of ``variant`` on ``items``; ``applied`` (when given) receives the
    proof that the variant's adapter was active while it answered.

    ``compute_dtype="bfloat16"``: the adapted weights are formed in fp32 (SVF composed, peft
    adapters merged) and the whole model is then cast to bf16 once, as the trainer's bf16
    validation does; the base model is the fp32 weights rounded once."""
    from t2bench.models import load_model, resolve_dtype

    dtype = resolve_dtype(compute_dtype)
    loaded = load_model(model_name)
    model, tok = loaded.model, loaded.tokenizer
    proof = {"applied": variant.kind == "base", "applied_evidence": "base weights"}
    with ExitStack() as stack:
        if variant.kind == "svf":
            expert = load_expert(variant.path)
            spec = TargetSpec(expert.meta.module_set, ",".join(map(str, expert.meta.layers)))
            decomp = decompose(model, spec, model_id=loaded.model_id, progress=False)
            patcher = SVFPatcher(model, decomp)
            stack.enter_context(patcher.use(expert))
            proof = {
                "applied": patcher.active is not None and patcher.compositions > 0,
                "applied_evidence": f"SVF expert {expert.meta.name} composed into "
                f"{patcher.compositions} matrices",
            }
        elif variant.kind == "peft":
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(variant.path)).eval()
            proof = {
                "applied": bool(getattr(model, "active_adapters", None)),
                "applied_evidence": f"peft adapter {variant.path} active "
                f"({', '.join(model.active_adapters)})",
            }
            if dtype != torch.float32:
                model = model.merge_and_unload()  # in fp32, before the one rounding to bf16
                proof["applied_evidence"] += ", merged in fp32"
        if dtype != torch.float32:
            model.to(dtype)
        out = greedy_correct(
            model,
            tok,
            items,
            task,
            max_new_tokens=new_tokens,
            batch=batch,
            progress=True,
            desc=variant.name,
        )
    if applied is not None:
        applied.update(proof)
    return out


def svf_variant(task: str, runs: Path, results: dict) -> str | None:
    """The task's SVF expert among the scored variants: SVF-PG, or the SVF expert trained in
    its place where PG had no signal (recipes.NO_SIGNAL_FALLBACK: code-svf-ntp); None when
    neither was scored."""
    name = in_place_of(runs, f"{task}-svf-pg")
    return name if name in results else None


def versus(results: dict[str, list], svf: str | None) -> dict:
    """SVF − other, paired, for every scored adapter other than the SVF expert ``svf``."""
    if svf is None:
        return {}
    return {
        name: paired_difference(r, results[svf])
        for name, r in results.items()
        if name not in ("base", svf)
    }


def compare(
    task: str,
    *,
    n: int,
    runs: Path | None = None,
    out: Path | None = None,
    model: str | None = None,
    seed: int = 0,
    batch: int = 16,
    max_new_tokens: int | None = None,
    difficulty: str = "default",
    compute_dtype: str = "float32",
    only: list[str] | None = None,
) -> dict:
    """Score base and every finished run of ``task`` (``only``: base and the named runs) on
    ``n`` held-out items; write a record.

    Besides each variant's difference to the base model, the record holds each other
    variant's difference to the task's SVF expert (``versus_svf``: SVF − other, paired; the
    expert is ``svf_variant``, SVF-PG or the fallback trained in its place)."""
    commit = git_commit()
    rw.check_task(task)
    items, split = heldout_items(task, n, seed, difficulty)
    new_tokens = max_new_tokens or DEFAULT_NEW_TOKENS[task]
    runs = runs or results_path("experts")
    variants = discover(task, runs)
    if only:
        unknown = sorted(set(only) - {v.name for v in variants})
        if unknown:
            raise ConfigError(
                f"--only {','.join(unknown)}: no finished {task} run of that name under {runs} "
                f"(finished: {', '.join(v.name for v in variants[1:]) or 'none'})"
            )
        variants = [v for v in variants if v.kind == "base" or v.name in only]
    if len(variants) == 1:
        raise ConfigError(f"no finished {task} runs under {runs}: train them first (nox -s train)")
    fingerprint = model_fingerprint(model)  # the base weights every variant starts from
    results, seconds, applied = {}, {}, {}
    for v in variants:
        t0 = time.perf_counter()
        applied[v.name] = {}
        with torch.no_grad():
            results[v.name] = score_variant(
                v,
                model,
                items,
                task,
                new_tokens,
                batch,
                applied=applied[v.name],
                compute_dtype=compute_dtype,
            )
        seconds[v.name] = round(time.perf_counter() - t0, 1)
    rows = []
    for v in variants:
        acc = accuracy([int(x) for x in results[v.name]])
        row = {
            "variant": v.name,
            "kind": v.kind,
            "accuracy": acc["score"],
            "accuracy_ci95": [acc["ci_low"], acc["ci_high"]],
            "seconds": seconds[v.name],
            **applied[v.name],
        }
        if v.kind != "base":
            row |= paired_difference(results["base"], results[v.name])
            row["artifact"] = str(v.path)
        rows.append(row)
    svf = svf_variant(task, runs, results)
    versus_svf = versus(results, svf)
    uids = [it.uid for it in items]
    payload = {
        "table": rows,
        "per_item": {k: [int(x) for x in r] for k, r in results.items()},
        "item_uids": uids,
        "versus_svf": versus_svf,
        "svf_variant": svf,
        "max_new_tokens": new_tokens,
        "decoding": "greedy",
        "batch_size": batch,  # bf16 answers can depend on the padding a batch brings
        "compute_dtype": compute_dtype,
        "power": [power_record(task, len(items), rows[0]["accuracy"])],
        "provenance": provenance(
            commit=commit,
            base_model=model or "smollm2-135m-instruct",
            model_fingerprint=fingerprint,
            weights_sha256={"model": fingerprint["sha256_weights"]},
            data_split=split,
            items_sha256=items_sha256(uids),
            seed=seed,
            wall_seconds=round(sum(seconds.values()), 1),
            **({"code_runner": rw.code_runner(task)} if task == "code" else {}),
        ),
    }
    if out is not None:
        payload["path"] = str(write_record(out, task, difficulty, payload))
    return payload


def write_record(out: Path, task: str, difficulty: str, payload: dict) -> Path:
    """A new ``heldout-<task>[-mix]-<stamp>.json`` under ``out`` with its Markdown beside it."""
    stem = f"heldout-{task}" + ("-mix" if difficulty != "default" else "")
    return new_record_with_markdown(Path(out), stem, payload, markdown(task, payload))


#: What two held-out records must share for their per-item results to be paired: the items,
#: the decoding and generation budget, the compute dtype, the base weights and the code runner.
MERGE_FIELDS = {
    "item uids": lambda r: r.get("item_uids"),
    "max_new_tokens": lambda r: r.get("max_new_tokens"),
    "decoding": lambda r: r.get("decoding"),
    "compute dtype": lambda r: r.get("compute_dtype", "float32"),
    "data split": lambda r: r["provenance"].get("data_split"),
    "item seed": lambda r: r["provenance"].get("seed"),
    "base weights sha256": lambda r: (r["provenance"].get("weights_sha256") or {}).get("model"),
    "code runner": lambda r: r["provenance"].get("code_runner"),
}


def _read_paired_records(paths: list[Path]) -> list[tuple[Path, dict]]:
    """The held-out records at ``paths``, refused unless they agree on :data:`MERGE_FIELDS`."""
    if len(paths) < 2:
        raise ConfigError("--merge needs at least two held-out records (heldout-<task>-*.json)")
    records = []
    for path in map(Path, paths):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--merge {path}: not a readable JSON record ({e})") from e
        if not {"per_item", "item_uids", "table", "provenance"} <= set(rec):
            raise ConfigError(
                f"--merge {path}: not a held-out record with per-item results (written by "
                "t2bench heldout); rescore its variants with t2bench heldout --only"
            )
        records.append((path, rec))
    first_path, first = records[0]
    for path, rec in records[1:]:
        for field, get in MERGE_FIELDS.items():
            if get(rec) != get(first):
                raise ConfigError(
                    f"--merge: {path} and {first_path} differ in {field}, so their items are "
                    "not paired; score the variants together with t2bench heldout --only"
                )
    return records


def merge(paths: list[Path], *, runs: Path | None = None, out: Path | None = None) -> dict:
    """One comparison from held-out records that each scored some variants on the same items
    (``t2bench heldout --merge``): every variant's per-item results, its difference to the
    base and SVF − other, without scoring anything again.

    Refused unless the records agree on :data:`MERGE_FIELDS` and their base models answered
    every item alike (the evidence that the conditions were the same); a variant scored in
    two records must have the same per-item results in both. Rows keep their source record's
    accuracy, seconds and proof of application, and name that record; the provenance lists
    every source record with its sha256 and commit."""
    commit = git_commit()
    records = _read_paired_records(paths)
    first = records[0][1]
    task = first["provenance"]["data_split"]["task"]
    results: dict[str, list[int]] = {}
    rows: dict[str, dict] = {}
    for path, rec in records:
        by_variant = {r["variant"]: r for r in rec["table"]}
        for name, per_item in rec["per_item"].items():
            if name in results:
                if per_item != results[name]:
                    changed = sum(a != b for a, b in zip(per_item, results[name], strict=True))
                    raise ConfigError(
                        f"--merge: {name} answered {changed} of {len(per_item)} items "
                        f"differently in {path} than in an earlier record, so the records were "
                        "not made under the same conditions; score the variants together "
                        "with t2bench heldout --only"
                    )
                continue
            results[name] = per_item
            rows[name] = {**by_variant[name], "source_record": str(path)}
    if "base" not in results:
        raise ConfigError("--merge: no record holds the base model's per-item results")
    for name, row in rows.items():
        row["accuracy"] = accuracy(results[name])["score"]
        if name != "base":
            row |= paired_difference(results["base"], results[name])
    results = {k: results[k] for k in sorted(results, key=table_order(task))}
    svf = svf_variant(task, runs or results_path("experts"), results) or next(
        (r["svf_variant"] for _, r in records if r.get("svf_variant") in results), None
    )
    prov = first["provenance"]
    uids = first["item_uids"]
    payload = {
        "table": [rows[k] for k in results],
        "per_item": results,
        "item_uids": uids,
        "versus_svf": versus(results, svf),
        "svf_variant": svf,
        "max_new_tokens": first["max_new_tokens"],
        "decoding": first["decoding"],
        "compute_dtype": first.get("compute_dtype", "float32"),
        "power": [power_record(task, len(uids), rows["base"]["accuracy"])],
        "provenance": provenance(
            commit=commit,
            base_model=prov.get("base_model"),
            model_fingerprint=prov.get("model_fingerprint"),
            weights_sha256=prov.get("weights_sha256"),
            data_split=prov["data_split"],
            items_sha256=items_sha256(uids),
            seed=prov.get("seed"),
            # the scoring time behind the numbers: each variant once, from its source record
            wall_seconds=round(sum(r.get("seconds", 0.0) for r in rows.values()), 1),
            merged_from=[
                {
                    "path": str(path),
                    "sha256": file_sha256(path),
                    "commit": rec["provenance"].get("commit"),
                    "created_utc": rec["provenance"].get("created_utc"),
                    "variants": list(rec["per_item"]),
                    "batch_size": rec.get("batch_size"),
                    "torch_threads": (rec["provenance"].get("machine") or {}).get("torch_threads"),
                }
                for path, rec in records
            ],
            **({"code_runner": prov["code_runner"]} if prov.get("code_runner") else {}),
        ),
    }
    if out is not None:
        difficulty = prov["data_split"].get("difficulty", "default")
        payload["path"] = str(write_record(out, task, difficulty, payload))
    return payload


def markdown(task: str, payload: dict) -> str:
    """The comparison as a Markdown table (differences in points, with the paired 95% CI)."""

    prov = payload["provenance"]
    weights = (prov.get("weights_sha256") or {}).get("model")
    lines = [
        f"# Held-out {task}: {len(payload['item_uids'])} test items",
        "",
        f"commit `{prov['commit']}`, model {prov['base_model']}"
        + (f" (weights sha256 `{weights}`)" if weights else "")
        + f", {prov['created_utc']}, greedy, max_new_tokens {payload['max_new_tokens']}, "
        f"compute {payload.get('compute_dtype', 'float32')}, wall {prov['wall_seconds']} s"
        + (
            f"; items: seed {prov['seed']}, uids sha256 `{prov['items_sha256']}`"
            if prov.get("items_sha256")
            else ""
        ),
        "",
    ]
    if prov.get("merged_from"):
        lines += [
            "Merged from held-out records of the same items and conditions (each row's "
            "`source_record`; the base answered every item alike in all of them): "
            + ", ".join(
                f"`{Path(m['path']).name}` (commit `{(m.get('commit') or '?')[:8]}`)"
                for m in prov["merged_from"]
            )
            + ".",
            "",
        ]
    rows = []
    for r in payload["table"]:
        if r["kind"] == "base":
            rows.append(["base", f"{r['accuracy']:.3f}", "", "", "", ""])
            continue
        rows.append(
            [
                r["variant"],
                f"{r['accuracy']:.3f}",
                f"{100 * r['diff']:+.1f}",
                f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]",
                f"{r['wins']}/{r['losses']}",
                f"{r.get('p', r.get('mcnemar_p')):.3g}",
            ]
        )
    head = ["variant", "accuracy", "Δ vs base", "paired 95% CI (Newcombe)", "wins/losses"]
    lines += markdown_rows([*head, "p (McNemar exact)"], rows)
    if payload.get("versus_svf"):
        lines += [
            "",
            f"SVF − other on the same items ({payload.get('svf_variant') or f'{task}-svf-pg'} "
            "minus the row's variant):",
            "",
        ]
        lines += markdown_rows(
            ["other", "SVF − other", "paired 95% CI", "SVF wins/losses", "p"],
            (
                [
                    name,
                    f"{100 * d['diff']:+.1f}",
                    f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]",
                    f"{d['wins']}/{d['losses']}",
                    f"{d['p']:.3g}",
                ]
                for name, d in payload["versus_svf"].items()
            ),
        )
    if payload.get("power"):
        lines += ["", power_line(payload["power"])]
    return "\n".join(lines) + "\n"
