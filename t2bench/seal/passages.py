"""A passage with its questions (:class:`Passage`, :class:`QA`), the check that makes it usable
for SEAL (:func:`check_passage`: text, at least one question, every question at least one
reference answer), its fingerprint for provenance, and user passages from JSONL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2bench.errors import ConfigError

_JSONL_FORMAT = (
    'one JSON object per line: {"title": ..., "text": ..., '
    '"questions": [{"question": ..., "answers": [...]}]} (optional "uid", "source")'
)


class SealDataError(ConfigError):
    """A passage, question or passage file is unusable."""


@dataclass(frozen=True)
class QA:
    """One question and its reference answers (any of them counts as correct)."""

    question: str
    answers: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.answers, str):
            object.__setattr__(self, "answers", (self.answers,))
        else:
            object.__setattr__(self, "answers", tuple(self.answers))


@dataclass(frozen=True)
class Passage:
    """A passage and its questions. ``source`` is "squad", "fictional" or "user"."""

    uid: str
    title: str
    text: str
    questions: tuple[QA, ...]
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "questions", tuple(self.questions))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (lists instead of tuples) that :meth:`from_dict` reads back."""
        return {
            "uid": self.uid,
            "title": self.title,
            "text": self.text,
            "questions": [
                {"question": q.question, "answers": list(q.answers)} for q in self.questions
            ],
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Passage:
        """Build a passage from :meth:`to_dict` output or a user record.

        ``uid`` defaults to ``"user-"`` plus a hash of title and text, ``source`` to "user".
        Raises :class:`SealDataError` naming a missing key or a value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise SealDataError(
                f"a passage must be a JSON object, got {type(data).__name__}: write "
                + _JSONL_FORMAT
            )
        missing = [key for key in ("title", "text", "questions") if key not in data]
        if missing:
            raise SealDataError(
                f"passage is missing key(s) {', '.join(map(repr, missing))}: add them; a passage "
                "is " + _JSONL_FORMAT
            )
        title, text = data["title"], data["text"]
        for key, value in (("title", title), ("text", text)):
            if not isinstance(value, str):
                raise SealDataError(
                    f"passage {key!r} must be a string, got {type(value).__name__}: fix the data"
                )
        raw_questions = data["questions"]
        if not isinstance(raw_questions, list):
            raise SealDataError(
                f"passage {title!r}: 'questions' must be a list of "
                '{"question": ..., "answers": [...]} objects, got '
                f"{type(raw_questions).__name__}; fix the data"
            )
        questions = tuple(_qa_from_dict(q, title) for q in raw_questions)
        return cls(
            uid=str(data.get("uid") or passage_uid("user", title, text)),
            title=title,
            text=text,
            questions=questions,
            source=str(data.get("source") or "user"),
        )


def _qa_from_dict(raw: Any, title: str) -> QA:
    if not isinstance(raw, Mapping) or "question" not in raw or "answers" not in raw:
        raise SealDataError(
            f"passage {title!r}: every question must be an object with keys 'question' and "
            f"'answers', got {raw!r}; fix the data"
        )
    answers = raw["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise SealDataError(
            f"passage {title!r}, question {raw['question']!r}: 'answers' must be a list of "
            f"strings, got {answers!r}; fix the data"
        )
    return QA(str(raw["question"]), tuple(answers))


def passage_uid(prefix: str, title: str, text: str) -> str:
    return f"{prefix}-" + hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:12]


def check_passage(p: Passage) -> Passage:
    """Return ``p`` if it can be used for SEAL; raise :class:`SealDataError` otherwise."""
    if not p.text.strip():
        raise SealDataError(
            f"passage {p.uid} ({p.title}) has no text: a self-edit restates the passage, so it "
            "needs text; drop the passage or fill in its text"
        )
    if not p.questions:
        raise SealDataError(
            f"passage {p.uid} ({p.title}) has no questions: SEAL's reward is closed-book "
            "accuracy on the passage's own questions, so every passage needs at least one; "
            "drop it or add questions"
        )
    for qa in p.questions:
        if not qa.question.strip():
            raise SealDataError(
                f"passage {p.uid} ({p.title}) has an empty question: write the question text or "
                "remove it"
            )
        if not any(a.strip() for a in qa.answers):
            raise SealDataError(
                f"passage {p.uid} ({p.title}): question {qa.question!r} has no answers: a "
                "question needs at least one reference answer to be graded; add its answers or "
                "remove the question"
            )
    return p


def passages_fingerprint(passages: Iterable[Passage]) -> str:
    """16 hex of the sha256 of the passages' canonical JSON (sorted keys), for provenance."""
    blob = json.dumps(
        [p.to_dict() for p in passages], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_passages_jsonl(path: str | Path) -> list[Passage]:
    """Checked passages from a JSONL file with one :meth:`Passage.from_dict` record per line."""
    path = Path(path)
    if not path.is_file():
        raise SealDataError(
            f"passage file {path} does not exist: pass a file with " + _JSONL_FORMAT
        )
    passages: list[Passage] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SealDataError(
                    f"{where}: not valid JSON ({exc.msg}); write " + _JSONL_FORMAT
                ) from None
            try:
                passage = check_passage(Passage.from_dict(record))
            except SealDataError as exc:
                raise SealDataError(f"{where}: {exc}") from None
            if passage.uid in seen:
                raise SealDataError(
                    f"{where}: uid {passage.uid!r} was already used on line {seen[passage.uid]}: "
                    "give every passage its own uid (identical passages share the default one; "
                    "drop the duplicate)"
                )
            seen[passage.uid] = lineno
            passages.append(passage)
    if not passages:
        raise SealDataError(f"passage file {path} holds no passages: write " + _JSONL_FORMAT)
    return passages
