"""Generated text-in-image VQA data: a deterministic, offline stand-in for TextVQA.

Every item is a small square RGB image with one short text drawn on it, and one question:

``word``    "What word is written in the image?"   answer: one of :data:`WORDS` (lower case;
            the text is drawn in lower case, UPPER CASE or Title Case)
``number``  "What number is written in the image?" answer: an integer 0-999, drawn as digits
``colour``  "What colour is the text?"             answer: the name of the text colour, one of
            :data:`PALETTE` (the text itself is a word or a number)

Question types are mixed 40 % / 40 % / 20 % (:data:`QTYPE_WEIGHTS`). Every item carries
``answers``: ten strings, like TextVQA's ten human answers. This synthetic set has exactly one
correct answer per item, so ``answers`` is the canonical answer ten times (no alternative
spellings such as ``"seven"`` for ``"7"``); the VQA accuracy ``min(#matches / 3, 1)`` is then 1
for the canonical answer (after VQA normalisation) and 0 for anything else.

Rendering varies the font (:func:`available_fonts`: the DejaVu files in :data:`FONT_FILES`
that exist on this machine, plus Pillow's bundled scalable default font, which always exists),
the font size (``min_font..max_font``, shrunk until the text fits inside the image with a
:data:`MARGIN` px border), the text colour (:data:`PALETTE`), the background (a solid colour,
a two-colour linear gradient, or a solid colour with light uniform noise) and the position
(uniform over the places where the whole text is visible). The text colour and *every*
background pixel differ in luma (Rec. 709 weights on the 0-255 sRGB values, scaled to 0..1)
by at least :data:`MIN_CONTRAST`; backgrounds are redrawn until that holds. No rotation.

Determinism: item ``i`` of split ``s`` is drawn from its own RNG,
``random.Random(f"{seed}:{s}:{i}")`` (string seeds are hashed with SHA-512, independent of
``PYTHONHASHSEED``); the noise of a noisy background comes from a numpy Generator whose seed is
drawn from that RNG and stored in the item. Any item can therefore be regenerated alone, and
the same config gives the same pixels wherever the same fonts (and FreeType) are installed.
The content (question type, text, answer, text colour) is drawn first, so answers can be
listed without rendering (used by :func:`chance_accuracy`). :func:`fingerprint` hashes the
config, the font list and the pixels of the first items of every split: record it with
results to pin exactly which data were used.

Splits ``train``, ``valid`` and ``test`` use different seeds (the split name is part of the
RNG key), so their items are independent draws: a test item's (question type, answer, font,
colour) combination may well also occur in train, but every test item is a distinct image.
Byte-identical images across splits are impossible by construction: the two low bits of the
blue channel of the top-left pixel (never covered by text, see :data:`MARGIN`) encode the split
(:data:`SPLIT_CODES`), an invisible change of at most 3/255.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DATA_VERSION",
    "FONT_FILES",
    "MARGIN",
    "MIN_CONTRAST",
    "PALETTE",
    "PILLOW_DEFAULT_FONT",
    "QUESTIONS",
    "QTYPE_WEIGHTS",
    "SPLITS",
    "SPLIT_CODES",
    "WORDS",
    "TextImageConfig",
    "available_fonts",
    "background_array",
    "chance_accuracy",
    "dataset_metadata",
    "fingerprint",
    "item_content",
    "luma",
    "make_item",
    "make_split",
    "save_split",
    "to_hf_dataset",
]

#: Bumped whenever the generator would produce different items for the same config.
DATA_VERSION = 1

SPLITS = ("train", "valid", "test")
#: Stamped into the low 2 bits of the blue channel of pixel (0, 0).
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}

QUESTIONS = {
    "word": "What word is written in the image?",
    "number": "What number is written in the image?",
    "colour": "What colour is the text?",
}
QTYPE_WEIGHTS = {"word": 0.4, "number": 0.4, "colour": 0.2}

#: 60 common short (3-7 letters) English words, lower case; no colour names.
WORDS = (
    "stop", "open", "closed", "cafe", "exit", "bank", "hotel", "pizza", "taxi", "sale",
    "park", "bus", "shop", "pull", "push", "menu", "bar", "gym", "bakery", "market",
    "school", "police", "museum", "garage", "toilet", "office", "ticket", "train", "metro", "airport",
    "station", "library", "garden", "beach", "bridge", "river", "coffee", "bread", "fruit", "fresh",
    "free", "welcome", "hello", "danger", "caution", "enter", "lift", "stairs", "north", "south",
    "east", "west", "city", "street", "road", "cash", "food", "music", "water", "fire",
)  # fmt: skip

#: Named text colours (the answers of ``colour`` questions) and their sRGB values.
PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 150, 40),
    "blue": (30, 60, 220),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "yellow": (250, 220, 0),
    "orange": (250, 135, 0),
    "purple": (130, 40, 170),
}

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
#: Candidate TrueType fonts, in the order used for drawing (missing files are skipped).
FONT_FILES = {
    "DejaVuSans": f"{FONT_DIR}/DejaVuSans.ttf",
    "DejaVuSans-Bold": f"{FONT_DIR}/DejaVuSans-Bold.ttf",
    "DejaVuSerif": f"{FONT_DIR}/DejaVuSerif.ttf",
    "DejaVuSerif-Bold": f"{FONT_DIR}/DejaVuSerif-Bold.ttf",
    "DejaVuSansMono": f"{FONT_DIR}/DejaVuSansMono.ttf",
}
#: Pillow's bundled scalable font, ``ImageFont.load_default(size=...)``; always available.
PILLOW_DEFAULT_FONT = "PillowDefault"

#: Minimum luma difference between the text colour and every background pixel.
MIN_CONTRAST = 0.35
#: Border (px) kept free of text on every side.
MARGIN = 3
#: Font sizes are shrunk down to this size at most before giving up.
SMALLEST_FONT = 6
BACKGROUND_KINDS = {"solid": 0.4, "gradient": 0.3, "noise": 0.3}
GRADIENT_DIRECTIONS = ("horizontal", "vertical", "diagonal")
_MAX_BACKGROUND_TRIES = 200
_FINGERPRINT_ITEMS = 4
_LUMA = np.array([0.2126, 0.7152, 0.0722]) / 255.0


@dataclass(frozen=True)
class TextImageConfig:
    """What to generate; the same config always gives the same items (for the same fonts)."""

    seed: int = 0
    image_size: int = 96
    n_train: int = 2000
    n_valid: int = 200
    n_test: int = 300
    min_font: int = 14
    max_font: int = 30

    def __post_init__(self):
        if self.image_size < 2 * MARGIN + 8:
            raise ValueError(f"image_size must be at least {2 * MARGIN + 8}, got {self.image_size}")
        if not 1 <= self.min_font <= self.max_font:
            raise ValueError(
                f"need 1 <= min_font <= max_font, got min_font={self.min_font}, "
                f"max_font={self.max_font}"
            )
        for name in ("n_train", "n_valid", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def split_size(self, split: str) -> int:
        return getattr(self, f"n_{_check_split(split)}")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


# --------------------------------------------------------------------------- fonts, colours


def available_fonts() -> tuple[str, ...]:
    """Names of the fonts used on this machine: the existing :data:`FONT_FILES`, then
    :data:`PILLOW_DEFAULT_FONT`. Items depend on this list; it is part of the fingerprint."""
    present = tuple(name for name, path in FONT_FILES.items() if Path(path).is_file())
    return (*present, PILLOW_DEFAULT_FONT)


@functools.lru_cache(maxsize=512)
def _font(name: str, size: int):
    from PIL import ImageFont

    if name == PILLOW_DEFAULT_FONT:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(FONT_FILES[name], size=size)


def luma(rgb) -> float | np.ndarray:
    """Rec. 709 luma of sRGB values 0-255 (last axis = channels), scaled to 0..1."""
    return np.asarray(rgb, dtype=np.float64) @ _LUMA


# --------------------------------------------------------------------------- content


def _rng(config: TextImageConfig, split: str, index: int) -> random.Random:
    return random.Random(f"{config.seed}:{_check_split(split)}:{int(index)}")


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _draw_content(rng: random.Random) -> dict[str, Any]:
    """The first draws of an item's RNG: question type, text, answer, text colour."""
    qtype = _weighted(rng, QTYPE_WEIGHTS)
    kind = qtype if qtype != "colour" else rng.choice(("word", "number"))
    if kind == "word":
        word = rng.choice(WORDS)
        case = _weighted(rng, {"lower": 0.4, "upper": 0.4, "title": 0.2})
        text = {"lower": word, "upper": word.upper(), "title": word.title()}[case]
        value = word
    else:
        value = str(rng.randint(0, 999))
        text = value
    colour = rng.choice(list(PALETTE))
    answer = colour if qtype == "colour" else value
    return {
        "question": QUESTIONS[qtype],
        "answer": answer,
        "answers": [answer] * 10,
        "qtype": qtype,
        "text": text,
        "text_colour": colour,
    }


def item_content(config: TextImageConfig, split: str, index: int) -> dict[str, Any]:
    """The question/answer part of :func:`make_item` without rendering (cheap)."""
    return _draw_content(_rng(config, split, index))


# --------------------------------------------------------------------------- rendering


def background_array(background: dict[str, Any], size: int) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 background described by an item's ``background`` entry,
    without the text (the split stamp on pixel (0, 0) included)."""
    kind = background["kind"]
    colours = np.asarray(background["colours"], dtype=np.float64)
    if kind == "gradient":
        pos = np.arange(size, dtype=np.float64) / (size - 1)
        x, y = np.meshgrid(pos, pos)  # x varies along columns
        t = {"horizontal": x, "vertical": y, "diagonal": (x + y) / 2}[background["direction"]]
        arr = colours[0] * (1 - t[..., None]) + colours[1] * t[..., None]
    else:
        arr = np.broadcast_to(colours[0], (size, size, 3)).astype(np.float64)
    if kind == "noise":
        amp = int(background["amplitude"])
        noise = np.random.default_rng(int(background["seed"])).integers(
            -amp, amp, size=(size, size, 3), endpoint=True
        )
        arr = arr + noise
    elif kind not in ("solid", "gradient"):
        raise ValueError(f"unknown background kind {kind!r}")
    out = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    out[0, 0, 2] = (out[0, 0, 2] & 0xFC) | int(background["split_code"])
    return out


def _random_rgb(rng: random.Random) -> list[int]:
    return [rng.randint(0, 255) for _ in range(3)]


def _draw_background(rng: random.Random, text_rgb, size: int, split_code: int):
    """Redraw backgrounds until every pixel contrasts with the text colour."""
    text_luma = luma(text_rgb)
    for _ in range(_MAX_BACKGROUND_TRIES):
        kind = _weighted(rng, BACKGROUND_KINDS)
        bg: dict[str, Any] = {
            "kind": kind,
            "colours": [_random_rgb(rng)],
            "direction": "none",
            "amplitude": 0,
            "seed": 0,
            "split_code": split_code,
        }
        if kind == "gradient":
            bg["colours"].append(_random_rgb(rng))
            bg["direction"] = rng.choice(GRADIENT_DIRECTIONS)
        elif kind == "noise":
            bg["amplitude"] = rng.randint(6, 16)
            bg["seed"] = rng.getrandbits(63)
        if min(abs(luma(c) - text_luma) for c in bg["colours"]) < MIN_CONTRAST:
            continue  # cheap necessary condition: the corners carry the plain colours
        arr = background_array(bg, size)
        if np.abs(luma(arr) - text_luma).min() >= MIN_CONTRAST:
            return bg, arr
    # Unreachable in practice (a quarter or more of the draws succeed for every palette
    # colour); black or white always contrasts by >= 0.5.
    colour = [0, 0, 0] if text_luma >= 0.5 else [255, 255, 255]
    bg = {
        "kind": "solid",
        "colours": [colour],
        "direction": "none",
        "amplitude": 0,
        "seed": 0,
        "split_code": split_code,
    }
    return bg, background_array(bg, size)


def _fit_font(name: str, size: int, text: str, room: int):
    while True:
        font = _font(name, size)
        left, top, right, bottom = font.getbbox(text)
        if (right - left <= room and bottom - top <= room) or size <= SMALLEST_FONT:
            break
        size -= 1
    if right - left > room or bottom - top > room:
        raise ValueError(f"text {text!r} does not fit a {room}px box even at {size}px ({name})")
    return font, size, (left, top, right, bottom)


def make_item(config: TextImageConfig, split: str, index: int) -> dict[str, Any]:
    """Item ``index`` of ``split``; depends only on ``(config, split, index)`` and the fonts.

    Keys: ``id`` (``"test-00042"``), ``image`` (PIL RGB, ``image_size`` square), ``question``,
    ``answer``, ``answers`` (10 strings), ``qtype``, ``font``, ``font_size``, ``text``,
    ``text_colour`` (a :data:`PALETTE` name), ``background`` (dict, see
    :func:`background_array`), ``bbox`` (``[x0, y0, x1, y1]``, the text's box in pixels,
    exclusive end, inside the image with a :data:`MARGIN` px border) and ``contrast`` (the
    smallest luma difference between the text colour and a background pixel).
    """
    from PIL import Image, ImageDraw

    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = _rng(config, split, index)
    item = _draw_content(rng)
    size = config.image_size
    text_rgb = PALETTE[item["text_colour"]]

    font_name = rng.choice(available_fonts())
    font, font_size, (left, top, right, bottom) = _fit_font(
        font_name, rng.randint(config.min_font, config.max_font), item["text"], size - 2 * MARGIN
    )
    background, arr = _draw_background(rng, text_rgb, size, SPLIT_CODES[split])
    width, height = right - left, bottom - top
    x = rng.randint(MARGIN, size - MARGIN - width)
    y = rng.randint(MARGIN, size - MARGIN - height)

    image = Image.fromarray(arr, mode="RGB")
    ImageDraw.Draw(image).text((x - left, y - top), item["text"], fill=text_rgb, font=font)
    return {
        "id": f"{split}-{index:05d}",
        "image": image,
        **item,
        "font": font_name,
        "font_size": font_size,
        "background": background,
        "bbox": [x, y, x + width, y + height],
        "contrast": round(float(np.abs(luma(arr) - luma(text_rgb)).min()), 4),
    }


def char_centres(item: dict[str, Any]) -> list[tuple[str, float, float]]:
    """``(character, x, y)`` of each drawn character's centre in pixels, from the item's font,
    size and text box (as :func:`make_item` draws it)."""
    font = _font(item["font"], item["font_size"])
    text = item["text"]
    left = font.getbbox(text)[0]
    x0, y0, _, y1 = item["bbox"]
    origin = x0 - left
    out = []
    for k, ch in enumerate(text):
        a, b = font.getlength(text[:k]), font.getlength(text[: k + 1])
        out.append((ch, origin + (a + b) / 2, (y0 + y1) / 2))
    return out


def make_split(config: TextImageConfig, split: str, n: int | None = None) -> list[dict[str, Any]]:
    """Items ``0..n-1`` of ``split`` (``n`` defaults to the config's split size; any ``n`` is
    allowed, item ``i`` does not depend on ``n``). Shows a progress bar when ``n > 200``."""
    from tqdm.auto import tqdm

    n = config.split_size(split) if n is None else int(n)
    indices = tqdm(range(n), desc=f"t2vqa {split}", disable=n <= 200, unit="img")
    return [make_item(config, split, i) for i in indices]


class RenderedSplit(Sequence):
    """Items ``0..n-1`` of ``split``, each rendered when indexed (nothing is kept): a train split
    far larger than memory, e.g. fresh images for every pre-training step. ``split[i]`` equals
    ``make_item(config, split, i)``, so it is interchangeable with :func:`make_split`."""

    def __init__(self, config: TextImageConfig, split: str, n: int | None = None):
        self.config, self.split = config, split
        self.n = config.split_size(split) if n is None else int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.n:
            raise IndexError(f"{self.split} item {index} out of range (n={self.n})")
        return make_item(self.config, self.split, index)


# --------------------------------------------------------------------------- metadata


@functools.lru_cache(maxsize=32)
def _fingerprint(config: TextImageConfig, fonts: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    header = {"version": DATA_VERSION, "config": asdict(config), "fonts": fonts}
    h.update(json.dumps(header, sort_keys=True).encode())
    for split in SPLITS:
        for i in range(_FINGERPRINT_ITEMS):
            item = make_item(config, split, i)
            h.update(item.pop("image").tobytes())
            h.update(json.dumps(item, sort_keys=True).encode())
    return h.hexdigest()


def fingerprint(config: TextImageConfig) -> str:
    """sha256 (hex) over the generator version, the config, :func:`available_fonts` and the
    pixels + fields of the first items of every split."""
    return _fingerprint(config, available_fonts())


def dataset_metadata(config: TextImageConfig) -> dict[str, Any]:
    """What a run should record about the data: generator, config, fonts, fingerprint."""
    import PIL

    return {
        "generator": __name__,
        "version": DATA_VERSION,
        "config": asdict(config),
        "fonts": list(available_fonts()),
        "pillow": PIL.__version__,
        "fingerprint": fingerprint(config),
    }


def _features() -> datasets.Features:
    import datasets

    string = datasets.Value("string")
    return datasets.Features(
        {
            "id": string,
            "image": datasets.Image(),
            "question": string,
            "answer": string,
            "answers": datasets.Sequence(string),
            "qtype": string,
            "text": string,
            "text_colour": string,
            "font": string,
            "font_size": datasets.Value("int32"),
            "background": {
                "kind": string,
                "colours": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
                "direction": string,
                "amplitude": datasets.Value("int32"),
                "seed": datasets.Value("int64"),
                "split_code": datasets.Value("int32"),
            },
            "bbox": datasets.Sequence(datasets.Value("int32")),
            "contrast": datasets.Value("float32"),
        }
    )


def to_hf_dataset(config: TextImageConfig, split: str, n: int | None = None) -> datasets.Dataset:
    """:func:`make_split` as a ``datasets.Dataset`` (``image`` column: ``datasets.Image()``);
    ``dataset.info.description`` holds :func:`dataset_metadata` as JSON."""
    import datasets

    features = _features()
    rows = [{k: item[k] for k in features} for item in make_split(config, split, n)]
    info = datasets.DatasetInfo(description=json.dumps(dataset_metadata(config)), features=features)
    return datasets.Dataset.from_list(rows, features=features, info=info, split=split)


def save_split(
    config: TextImageConfig, split: str, folder: str | Path, n: int | None = None
) -> Path:
    """Write ``<id>.png`` files, ``metadata.jsonl`` (one line per image, ``file_name`` first:
    loadable with ``datasets.load_dataset("imagefolder", data_dir=folder)``) and
    ``generator.json`` (:func:`dataset_metadata`) into a new ``folder``; never overwrites."""
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(
            f"{folder} already exists; save_split never overwrites data: remove it or pass a "
            "new folder"
        )
    items = make_split(config, split, n)
    folder.mkdir(parents=True)  # raises FileExistsError if created meanwhile
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for item in items:
            file_name = f"{item['id']}.png"
            item.pop("image").save(folder / file_name, format="PNG")
            meta.write(json.dumps({"file_name": file_name, **item}) + "\n")
    (folder / "generator.json").write_text(json.dumps(dataset_metadata(config), indent=2) + "\n")
    return folder


# --------------------------------------------------------------------------- baseline


def chance_accuracy(config: TextImageConfig, split: str = "test") -> dict[str, Any]:
    """Accuracy of the best constant answer: for each question type, the most frequent answer
    on the train split (``n_train`` items; ties -> smallest string), scored on ``split``.

    With ten identical reference answers VQA accuracy equals exact match, so this is the
    ``vqa_accuracy`` a model that ignores the image (but knows the question type) reaches.
    Returns ``{"split", "overall", "per_qtype": {qtype: acc}, "majority_answer":
    {qtype: answer}, "counts": {qtype: n}}``; a question type absent from ``split`` gets
    accuracy ``nan`` in ``per_qtype``.
    """
    train: dict[str, Counter] = {q: Counter() for q in QUESTIONS}
    for i in range(config.n_train):
        c = item_content(config, "train", i)
        train[c["qtype"]][c["answer"]] += 1
    majority = {
        q: min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else ""
        for q, counts in train.items()
    }
    hits, counts = Counter(), Counter()
    for i in range(config.split_size(split)):
        c = item_content(config, split, i)
        counts[c["qtype"]] += 1
        hits[c["qtype"]] += c["answer"] == majority[c["qtype"]]
    total = sum(counts.values())
    return {
        "split": split,
        "overall": sum(hits.values()) / total if total else float("nan"),
        "per_qtype": {q: hits[q] / counts[q] if counts[q] else float("nan") for q in QUESTIONS},
        "majority_answer": majority,
        "counts": {q: counts[q] for q in QUESTIONS},
    }
