"""Memory of the t2 backend with 1, 4 and 16 experts, against the base model, per ``snapshot=``.

    python -m t2bench.bench.expert_memory [--model NAME] [--expert FILE] [--counts 1,4,16]
        [--snapshots device,cpu,disk] [--requests 16] [--device auto] [--out results/bench]

Jobs, each in its own fresh Python process (so one job's peak cannot hide in another's) with
one thread:

- ``base``: the backend without experts;
- ``loaded``: N experts loaded (vectors read, adapted matrices decomposed), none applied
  (``dispatch=none``): what loading costs before any snapshot exists;
- ``applied``: N experts loaded and every one of them applied in turn (requests alternate
  between the experts, so the backend switches N times), then the base restored: once per
  ``snapshot=`` option.

Each job builds the backend (``T2LM``), scores the same ``--requests`` log-likelihood
requests, restores the base weights and hashes them against the hash taken before any expert
was applied. Per phase (build, requests, restore) it records the peak resident set size
(Linux ``VmHWM``, reset at the start of each phase), the resident set at its end split into
anonymous and file-backed pages, and ``ru_maxrss`` for the whole process; on CUDA also the
allocator's peak (``torch.cuda.max_memory_allocated``) per phase. And, independent of the
machine, the bytes of the tensors the backend holds: the model's parameters, the decomposition
(U, σ, Vᵀ), the expert vectors and the snapshot, by device type.

Experts: ``--expert`` (default: the first expert under results/experts) plus, for N > 1,
synthetic ones derived from it by perturbing its z vectors (seeded; named ``<name>-synthNN``
and recorded as synthetic): memory does not depend on the values. Log-likelihoods are hashed,
so the record shows whether every snapshot option gives the same scores as the default.

A warm-up job first fills the SVD cache (cold SVDs would otherwise land in the first job's
build) and measures how far W is from its recomposition U diag(σ) Vᵀ in fp32: why the base
cannot be rebuilt exactly from the decomposition instead of kept. Writes
``expert-memory-<UTC>.json`` and ``.md`` with provenance under results/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from t2bench.core.io import new_record, results_path, write_atomic
from t2bench.core.tables import markdown_rows

RESULT_PREFIX = "T2BENCH_EXPERT_MEMORY "
SNAPSHOT_OPTIONS = ("device", "cpu", "disk")
MIB = 2**20
#: one thread everywhere: the figures are memory, and the machine is shared
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


# --------------------------------------------------------------------------- in the worker


def _status_kib() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process in KiB (empty off Linux)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_by_mapping(smaps: str | None = None) -> dict[str, dict[str, float]]:
    """Resident MiB (and of it anonymous, i.e. written) by what is mapped, from
    ``/proc/self/smaps``: the model's safetensors files (mapped, not copied, on the CPU), the
    SVD cache files, anonymous memory (heap: copies such as the snapshot), everything else."""
    if smaps is None:
        try:
            smaps = Path("/proc/self/smaps").read_text()
        except OSError:
            return {}
    out: dict[str, dict[str, float]] = {}
    what = "anonymous"
    for line in smaps.splitlines():
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            path = head[5].strip() if len(head) > 5 else ""
            if not path or path.startswith("["):
                what = "anonymous"
            elif path.endswith(".safetensors"):
                what = "svd cache files" if "/svd/" in path else "model files"
            else:
                what = "libraries and other files"
            continue
        if line.startswith(("Rss:", "Anonymous:")):
            field = "rss_mib" if line.startswith("Rss:") else "anon_mib"
            slot = out.setdefault(what, {"rss_mib": 0.0, "anon_mib": 0.0})
            slot[field] += int(line.split()[1]) / 1024
    return out


def _maxrss_kib() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, KiB on Linux


class Phases:
    """Peak and end-of-phase memory of the named phases of one job."""

    def __init__(self, device):
        import torch

        self.cuda = device.type == "cuda"
        self.device = device
        self.torch = torch
        self.record: dict[str, dict] = {"start": self._now()}

    def _now(self) -> dict:
        s = _status_kib()
        out = {
            "rss_mib": s.get("VmRSS", 0) / 1024,
            "anon_mib": s.get("RssAnon", 0) / 1024,
            "file_mib": s.get("RssFile", 0) / 1024,
        }
        if self.cuda:
            out["cuda_allocated_mib"] = self.torch.cuda.memory_allocated(self.device) / MIB
        return out

    def run(self, name: str, fn):
        """Run ``fn()`` as phase ``name``; its peaks are measured from the phase's start."""
        reset = _reset_peak()
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            self.torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        out = fn()
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
        rec = {"seconds": round(time.perf_counter() - t0, 3), **self._now()}
        # with the mark reset, VmHWM is this phase's peak; otherwise the process's so far
        rec["peak_rss_mib"] = _status_kib().get("VmHWM", 0) / 1024
        rec["peak_is_this_phase"] = reset
        if self.cuda:
            rec["cuda_peak_allocated_mib"] = self.torch.cuda.max_memory_allocated(self.device) / MIB
        self.record[name] = rec
        return out


def _by_device(tensors) -> dict[str, float]:
    """MiB of distinct tensors by device type (a tied weight counts once)."""
    seen, out = set(), {}
    for t in tensors:
        key = (t.device.type, t.data_ptr(), t.numel())
        if key in seen:
            continue
        seen.add(key)
        out[t.device.type] = out.get(t.device.type, 0.0) + t.numel() * t.element_size() / MIB
    return out


def _held(lm) -> dict:
    """MiB of what the backend holds, by device type; independent of the machine."""
    p = lm.patcher
    held = {"model_parameters": _by_device(lm.model.parameters())}
    if p is not None:
        held["adapted_matrices"] = _by_device(p._weights.values())
        held["decomposition"] = {k: v / MIB for k, v in p.decomposition.nbytes().items()}
        held["expert_vectors"] = _by_device(
            v for e in lm.experts.values() for v in e.params.values()
        )
        held["snapshot"] = {k: v / MIB for k, v in p.snapshot_bytes().items()}
    return held


def _requests(n: int):
    """``n`` fixed short log-likelihood requests (doc ids 0..n-1: the alternating dispatch
    sends request i to expert i mod N)."""
    from lm_eval.api.instance import Instance

    return [
        Instance(
            "loglikelihood",
            {},
            (f"Question: what is {i} plus {i + 3}? Answer:", f" {2 * i + 3}"),
            i,
            ("expert_memory", i, 1),
        )
        for i in range(n)
    ]


def _scores_sha256(results) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(results).encode()).hexdigest()[:16]


def worker(spec: dict) -> dict:
    """One job in this (fresh) process: build the backend, score, restore; memory per phase."""
    import torch

    torch.set_num_threads(1)
    from t2bench.backends.text import T2LM
    from t2bench.bench.backend import AlternatingDispatch
    from t2bench.core.provenance import state_sha256
    from t2bench.models import resolve_device

    device = resolve_device(spec["device"])
    phases = Phases(device)
    experts = spec["experts"]
    kwargs = {
        "pretrained": spec.get("model"),
        "device": str(device),
        "batch_size": spec["batch_size"],
    }
    if experts:
        kwargs |= {"experts": ";".join(experts), "dispatch": "none", "snapshot": spec["snapshot"]}
    lm = phases.run("build", lambda: T2LM(**kwargs))
    if spec["job"] == "applied":
        lm.dispatcher = AlternatingDispatch(lm.experts)  # every expert composed once, in turn
    requests = _requests(spec["requests"])
    scores = phases.run("requests", lambda: lm.loglikelihood(requests, disable_tqdm=True))
    held = _held(lm)  # after the requests: the snapshot exists once an expert was applied
    mapped = rss_by_mapping()

    if lm.patcher is not None:
        phases.run("restore", lm.patcher.restore)
    # checked after the phases: hashing copies each tensor, which is not the backend's memory
    restored = state_sha256(lm.model) == lm.weights_sha256["model"]
    p = lm.patcher
    return {
        "job": spec["job"],
        "experts": len(experts),
        "snapshot": spec["snapshot"] if experts else None,
        "device": device.type,
        "phases": phases.record,
        "ru_maxrss_mib": _maxrss_kib() / 1024,
        "held_mib": held,
        "rss_by_mapping_after_requests": mapped,
        "weight_compositions": p.applies if p else 0,
        "matrices": len(p.decomposition.targets) if p else 0,
        "svd_cache_hits": p.decomposition.stats.get("cache_hits") if p else None,
        "scores_sha256": _scores_sha256(scores),
        "restored_bit_exact": restored,
        "model_dtype": str(next(lm.model.parameters()).dtype),
    }


def warmup(spec: dict) -> dict:
    """Fill the SVD cache; how far W is from U diag(σ) Vᵀ recomposed in fp32."""
    import torch

    torch.set_num_threads(1)
    from t2bench.models import load_model
    from t2bench.svf import decompose, load_expert
    from t2bench.svf.targets import TargetSpec

    meta = load_expert(spec["experts"][0]).meta
    lm = load_model(spec.get("model"), dtype="auto", device=spec["device"])  # as T2LM does
    d = decompose(lm.model, TargetSpec(meta.module_set), model_id=lm.model_id, progress=False)
    modules = dict(lm.model.named_modules())
    differing = total = 0
    worst = 0.0
    with torch.no_grad():
        for t in d.targets:
            w = modules[t.module_name].weight
            s = d.svd[t.key]
            back = ((s.U * s.S) @ s.Vh).to(w.dtype)
            differing += int((back != w).sum())
            total += w.numel()
            worst = max(worst, float((back.float() - w.float()).abs().max()))
    return {
        "svd_cache_hits": d.stats["cache_hits"],
        "matrices": len(d.targets),
        "recompose": {
            "elements": total,
            "elements_not_bit_equal": differing,
            "max_abs_difference": worst,
        },
    }


# --------------------------------------------------------------------------- the parent


def synthetic_experts(source: Path, n: int, folder: Path, seed: int) -> list[dict]:
    """``n`` experts derived from ``source`` by z · (1 + 0.05·u), u ~ U(−1, 1) seeded per
    expert: same shapes, other values. Memory does not depend on the values."""
    import torch

    from t2bench.svf import load_expert, save_expert

    base = load_expert(source)
    out = []
    for k in range(n):
        g = torch.Generator().manual_seed(seed + k)
        e = load_expert(source)
        e.meta.name = f"{base.meta.name}-synth{k + 1:02d}"
        e.meta.provenance = {
            "kind": "synthetic: z of the source expert perturbed for the memory benchmark",
            "source": str(source),
            "perturbation": "z * (1 + 0.05 * u), u ~ U(-1, 1)",
            "seed": seed + k,
        }
        e.params = {
            key: v * (1 + 0.05 * (2 * torch.rand(v.shape, generator=g) - 1))
            for key, v in e.params.items()
        }
        out.append({"path": str(save_expert(e, folder / e.meta.name)), "name": e.meta.name})
    return out


def default_expert() -> Path:
    """The first training run's expert under results/experts (``<run>/<run>.safetensors``)."""
    folder = results_path("experts")
    runs = sorted(p for p in folder.glob("*/*.safetensors") if p.stem == p.parent.name)
    if not runs:
        raise SystemExit(f"no expert under {folder}: pass --expert FILE")
    return runs[0]


def jobs(counts: list[int], snapshots: list[str]) -> list[tuple[str, int, str]]:
    out = [("base", 0, "device")]
    for n in counts:
        out.append(("loaded", n, "device"))
        out += [("applied", n, s) for s in snapshots]
    return out


def _run_worker(mode: str, spec: dict) -> dict:
    cmd = [sys.executable, "-m", "t2bench.bench.expert_memory", f"--{mode}", json.dumps(spec)]
    env = {**os.environ, **THREAD_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"{mode} {spec.get('job')} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def label(job: str, n: int, snapshot: str | None) -> str:
    if job == "base":
        return "base model"
    return f"{n} loaded" if job == "loaded" else f"{n} applied, snapshot={snapshot}"


def summarize(rows: list[dict]) -> dict:
    """Per job: the peak over all phases and its increase over the base model; scores and
    restores checked across snapshot options."""
    base = next(r for r in rows if r["job"] == "base")

    def peak(r):
        return max(p["peak_rss_mib"] for k, p in r["phases"].items() if k != "start")

    out = {"peak_rss_mib": {}, "peak_over_base_mib": {}}
    for r in rows:
        name = label(r["job"], r["experts"], r["snapshot"])
        out["peak_rss_mib"][name] = round(peak(r), 1)
        out["peak_over_base_mib"][name] = round(peak(r) - peak(base), 1)
    same = {}
    for n in sorted({r["experts"] for r in rows if r["job"] == "applied"}):
        hashes = {
            r["snapshot"]: r["scores_sha256"]
            for r in rows
            if r["job"] == "applied" and r["experts"] == n
        }
        same[str(n)] = len(set(hashes.values())) == 1
    out["applied_scores_identical_across_snapshots"] = same
    out["loaded_scores_equal_base"] = all(
        r["scores_sha256"] == base["scores_sha256"] for r in rows if r["job"] == "loaded"
    )
    out["all_restores_bit_exact"] = all(r["restored_bit_exact"] for r in rows)
    return out


def _mib(d: dict | None) -> str:
    if not d:
        return "0"
    return " + ".join(f"{v:,.1f} {k}" for k, v in sorted(d.items()))


MAPPINGS = ("model files", "svd cache files", "anonymous", "libraries and other files")


def mapping_table(rows: list[dict]) -> list[str]:
    """Resident MiB by mapping after the requests, per row ('anon' = written pages in it)."""
    table = []
    for r in rows:
        m = r.get("rss_by_mapping_after_requests") or {}
        cells = [label(r["job"], r["experts"], r["snapshot"])]
        for what in MAPPINGS:
            x = m.get(what, {"rss_mib": 0.0, "anon_mib": 0.0})
            cells.append(f"{x['rss_mib']:,.1f} ({x['anon_mib']:,.1f})")
        table.append(cells)
    head = ["configuration", *(f"{w} MiB (anon)" for w in MAPPINGS)]
    return markdown_rows(head, table, right=range(1, len(head)))


def reading(payload: dict) -> str:
    """What the largest number of experts shows, in numbers taken from the rows."""
    rows, s = payload["rows"], payload["summary"]
    n = max(payload["counts"])
    by = {(r["job"], r["experts"], r["snapshot"]): r for r in rows}
    over = s["peak_over_base_mib"]
    loaded = by.get(("loaded", n, "device"))
    dev, disk = by.get(("applied", n, "device")), by.get(("applied", n, "disk"))
    parts = []
    if loaded:
        vec = sum(loaded["held_mib"]["expert_vectors"].values())
        parts.append(
            f"Loading {n} experts without applying one raises the peak by "
            f"{over[label('loaded', n, 'device')]:+.1f} MiB: the experts are {vec:.1f} MiB of "
            "vectors, and the decomposition's U, σ, Vᵀ are mapped from the SVD cache files, not "
            "read, until an expert is composed."
        )
    if dev and disk:
        snap = sum(dev["held_mib"]["snapshot"].values())
        svd = sum(dev["held_mib"]["decomposition"].values())
        adapted = sum(dev["held_mib"]["adapted_matrices"].values())
        svd_rss = (dev.get("rss_by_mapping_after_requests") or {}).get("svd cache files", {})
        parts.append(
            f"Applying them raises it by {over[label('applied', n, 'device')]:+.1f} MiB with "
            f"snapshot=device and by {over[label('applied', n, 'disk')]:+.1f} MiB with "
            f"snapshot=disk; the difference is the snapshot ({snap:.1f} MiB held, the adapted "
            f"matrices' size). The rest is the decomposition read while composing "
            f"({svd_rss.get('rss_mib', 0.0):.1f} MiB of SVD cache pages resident; "
            f"{svd:.1f} MiB held, {svd / adapted:.2f}× the adapted matrices), the larger cost. "
            "Writing W' into the model's mapped weights turns those pages into private copies "
            "in place, without adding to the resident size."
        )
    return " ".join(parts)


def markdown(payload: dict) -> str:
    rows, s = payload["rows"], payload["summary"]
    dev = rows[0]["device"]
    cuda = dev == "cuda"
    head = [
        "configuration",
        "peak RSS build MiB",
        "peak RSS requests MiB",
        "peak RSS MiB",
        "Δ peak vs base MiB",
        "RSS after (anon / file) MiB",
    ]
    if cuda:
        head.append("CUDA peak allocated MiB")
    head += ["held: decomposition MiB", "expert vectors MiB", "snapshot MiB", "restored bit-exact"]
    table = []
    for r in rows:
        name = label(r["job"], r["experts"], r["snapshot"])
        ph, held = r["phases"], r["held_mib"]
        end = ph.get("restore", ph["requests"])
        cells = [
            name,
            f"{ph['build']['peak_rss_mib']:,.1f}",
            f"{ph['requests']['peak_rss_mib']:,.1f}",
            f"{s['peak_rss_mib'][name]:,.1f}",
            f"{s['peak_over_base_mib'][name]:+,.1f}",
            f"{end['rss_mib']:,.1f} ({end['anon_mib']:,.1f} / {end['file_mib']:,.1f})",
        ]
        if cuda:
            cells.append(f"{max(p.get('cuda_peak_allocated_mib', 0) for p in ph.values()):,.1f}")
        cells += [
            _mib(held.get("decomposition")),
            f"{sum((held.get('expert_vectors') or {}).values()):.2f}",
            _mib(held.get("snapshot")),
            "yes" if r["restored_bit_exact"] else "NO",
        ]
        table.append(cells)
    first = rows[0]
    model_mib = _mib(first["held_mib"]["model_parameters"])
    adapted = next((r["held_mib"]["adapted_matrices"] for r in rows if r["experts"]), {})
    w = payload["warmup"]["recompose"]
    lines = [
        "## Expert memory of the t2 backend",
        "",
        f"Model {payload['model']} ({first['model_dtype']}, {model_mib} MiB of parameters), "
        f"experts on {payload['module_set']} ({rows[-1]['matrices']} adapted matrices, "
        f"{_mib(adapted)} MiB), device {dev}, one thread, one fresh process per row, "
        f"{payload['requests']} log-likelihood requests per row. Experts: {payload['expert']} "
        f"and, for more than one, synthetic copies of it with perturbed z "
        f"({', '.join(payload['synthetic'][:2])}, …). Peak RSS is the kernel's high-water mark "
        "(VmHWM) per phase, reset at each phase's start; it counts the memory-mapped model file "
        "pages too. 'held' are the tensors the backend keeps (machine-independent).",
        "",
        *markdown_rows(head, table, right=range(1, len(head) - 1)),
        "",
        "Scores identical across snapshot options (per number of experts): "
        + ", ".join(
            f"{n}: {'yes' if v else 'NO'}"
            for n, v in s["applied_scores_identical_across_snapshots"].items()
        )
        + f"; experts loaded but not applied score as the base model: "
        f"{'yes' if s['loaded_scores_equal_base'] else 'NO'}; every restore bit-exact: "
        f"{'yes' if s['all_restores_bit_exact'] else 'NO'}.",
        "",
        f"Recomposing W as U diag(σ) Vᵀ in fp32 (no snapshot at all): {w['elements_not_bit_equal']:,} "
        f"of {w['elements']:,} elements differ from W (max |Δ| {w['max_abs_difference']:.2e}), "
        "so it cannot replace the snapshot without changing the evaluated weights.",
        "",
        reading(payload),
        "",
        "Resident memory by mapping after the requests (from /proc/self/smaps):",
        "",
        *mapping_table(rows),
    ]
    if not cuda:
        lines += [
            "",
            "On this CPU-only machine the model lives in host memory, so snapshot=cpu holds "
            "the same copy as snapshot=device; what it saves on an accelerator (the adapted "
            "matrices' size, the 'snapshot' column) was not measured here.",
        ]
    return "\n".join(lines) + "\n"


def run(a: argparse.Namespace) -> dict:
    from t2bench.core.provenance import git_commit, provenance

    commit = git_commit()  # the code that runs, read before anything can change the tree
    t0 = time.perf_counter()
    source = Path(a.expert) if a.expert else default_expert()
    counts = [int(c) for c in a.counts.split(",") if c]
    snapshots = [s for s in a.snapshots.split(",") if s]
    bad = sorted(set(snapshots) - set(SNAPSHOT_OPTIONS))
    if bad:
        raise SystemExit(f"unknown snapshots {bad}: use {', '.join(SNAPSHOT_OPTIONS)}")
    common = {
        "model": a.model,
        "device": a.device,
        "batch_size": a.batch_size,
        "requests": a.requests,
    }
    with tempfile.TemporaryDirectory() as tmp:
        synth = synthetic_experts(source, max(counts) - 1, Path(tmp), a.seed)
        paths = [str(source)] + [e["path"] for e in synth]
        warm = _run_worker("warmup", {**common, "experts": paths[:1]})
        print(f"warm-up: {warm}", flush=True)
        rows = []
        for job, n, snapshot in jobs(counts, snapshots):
            spec = {**common, "job": job, "experts": paths[:n], "snapshot": snapshot}
            r = _run_worker("worker", spec)
            peak = max(p["peak_rss_mib"] for k, p in r["phases"].items() if k != "start")
            print(
                f"{label(job, n, snapshot):32} peak RSS {peak:8.1f} MiB  restored "
                f"{r['restored_bit_exact']}  scores {r['scores_sha256']}",
                flush=True,
            )
            rows.append(r)
    from t2bench.svf import load_expert

    meta = load_expert(source).meta
    payload = {
        "model": meta.base_model,
        "module_set": meta.module_set,
        "expert": str(source),
        "synthetic": [e["name"] for e in synth],
        "counts": counts,
        "snapshots": snapshots,
        "requests": a.requests,
        "batch_size": a.batch_size,
        "thread_env": THREAD_ENV,
        "warmup": warm,
        "rows": rows,
    }
    payload["summary"] = summarize(rows)
    payload["provenance"] = provenance(
        seed=a.seed,
        data="fixed synthetic log-likelihood requests (memory benchmark; scores only compared)",
        wall_s=round(time.perf_counter() - t0, 1),
    )
    payload["provenance"]["commit"] = commit
    return payload


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--expert",
        default=None,
        help="a real expert file (default: the first under results/experts)",
    )
    p.add_argument("--model", default=None, help="the experts' model (default: the packaged one)")
    p.add_argument("--counts", default="1,4,16", help="numbers of experts loaded")
    p.add_argument("--snapshots", default=",".join(SNAPSHOT_OPTIONS))
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default=None, help="default: the best available")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_path("bench")))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--warmup", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker or a.warmup:
        fn = worker if a.worker else warmup
        print(RESULT_PREFIX + json.dumps(fn(json.loads(a.worker or a.warmup))), flush=True)
        return 0
    payload = run(a)
    path = new_record(Path(a.out), "expert-memory", payload)
    text = markdown(payload)
    write_atomic(path.with_suffix(".md"), text)
    print(text)
    print(f"record: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
