"""The official VQA accuracy metric (VQA v1/v2, TextVQA) and its answer normalisation.

Every VQA question comes with ten free-form answers by ten different annotators. A predicted
answer counts as fully correct when at least three annotators gave it, and partially correct
when fewer did. To make the score robust to the choice of annotators, the official evaluator
(``vqaEval.py`` of the VQA API, Antol et al. 2015 / Goyal et al. 2017) averages over the ten
leave-one-out subsets of nine annotators::

    acc = mean over i in 1..10 of  min(1, #{j != i : answer_j == prediction} / 3)

So a prediction given by 0, 1, 2, 3, >= 4 of the ten annotators scores 0, 0.3, 0.6, 0.9, 1.0.

Before comparing, answers are normalised (:func:`normalize_answer`), in the official order:

1. whitespace: newlines and tabs become spaces, leading/trailing whitespace is stripped;
2. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when the
   text has it next to a space, or when the text contains a digit-comma-digit pattern (``1,000``
   becomes ``1000``), and is otherwise replaced by a space (``coca-cola`` becomes
   ``coca cola``); then periods are deleted with the official regex ``(?!<=\\d)(\\.)(?!\\d)``;
3. digits and articles: lower-case, split on whitespace, map the number words ``none``,
   ``zero`` .. ``ten`` to ``0`` .. ``10``, drop the articles ``a``, ``an``, ``the``, restore
   apostrophes with the official contractions table (``dont`` -> ``don't``), re-join with single
   spaces.

Which strings are normalised follows the official rule; see :func:`vqa_accuracy`.
:func:`clean_prediction` turns a model's raw generation into the answer string to score.

The implementation follows the published behaviour of the official evaluator, including its
quirks, so that scores are comparable:

* the period regex's ``(?!<=\\d)`` is a negative *lookahead* (not a lookbehind), so the
  preceding character is never checked: a period is deleted unless a digit follows it
  (``3.5`` and ``.5`` stay, ``5.`` becomes ``5``);
* the official call passes ``re.UNICODE`` (= 32) positionally as ``count``, so at most 32
  periods are deleted per answer;
* the adjacency test of step 2 looks at the text before any punctuation was processed;
* contraction keys that start with a capital ``I`` (``Im``, ``Ive``, ...) can never match
  lower-cased text; they are kept for completeness.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from t2bench.errors import ConfigError

__all__ = [
    "ARTICLES",
    "CONTRACTIONS",
    "NUMBER_WORDS",
    "PUNCTUATION",
    "clean_prediction",
    "normalize_answer",
    "vqa_accuracy",
]

#: Characters handled by the punctuation step (the official list; periods are handled apart).
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

#: Number words replaced by digits (the official ``manualMap``; note ``none`` -> ``0``).
NUMBER_WORDS: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}

#: Words dropped by the digit/article step.
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

#: The official contractions table: apostrophe-less spellings -> standard spelling. Entries are
#: kept as published, including the odd ones (``somebody'd`` -> ``somebodyd``, identities such
#: as ``let's`` -> ``let's``, and capitalised keys that cannot match lower-cased text).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}

# The official regexes, verbatim (see the module docstring for what the period regex does).
_COMMA_NUMBER = re.compile(r"(\d)(\,)(\d)")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_MAX_COUNT = int(re.UNICODE)  # the official evaluator passes re.UNICODE (32) as `count`

_PREFIX = re.compile(r"^(?:answer|a)\s*:\s*", re.IGNORECASE)
_QUOTES_AND_SPACE = " \t\r\n\"'`\u201c\u201d\u2018\u2019"


def _clean_whitespace(text: str) -> str:
    return str(text).replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    has_comma_number = _COMMA_NUMBER.search(text) is not None
    out = text
    for p in PUNCTUATION:
        # adjacency is tested on the input text, as in the official evaluator
        if has_comma_number or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_COUNT)


def _process_digits_articles(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """The official VQA normalisation: whitespace, punctuation, then digits/articles.

    >>> normalize_answer("Two dogs!")
    '2 dogs'
    >>> normalize_answer("the cat")
    'cat'
    >>> normalize_answer("1,000")
    '1000'
    >>> normalize_answer("dont")
    "don't"
    """
    return _process_digits_articles(_process_punctuation(_clean_whitespace(text)))


def vqa_accuracy(
    prediction: str,
    answers: Sequence[str],
    *,
    always_normalize_answers: bool = False,
) -> float:
    """Official VQA accuracy of ``prediction`` against the human ``answers`` (normally ten).

    For each answer ``i``, count the *other* answers equal to the prediction and score
    ``min(1, matches / 3)``; return the mean over all ``i`` (leave-one-out by position, so
    duplicate answers are each left out once). With ten answers, a prediction matching
    0/1/2/3/>=4 of them scores 0/0.3/0.6/0.9/1.0.

    Normalisation follows the official evaluator's rule:

    * the prediction and every answer always get whitespace cleaning (newlines/tabs -> spaces,
      stripped);
    * the prediction always gets the full :func:`normalize_answer` (punctuation, then
      digits/articles/contractions);
    * the answers get the full normalisation **only when they are not all identical** (after
      whitespace cleaning). Ten identical answers are compared verbatim: the official VQA
      annotations are already normalised, and the official code skips them in that case. A
      non-normalised reference given unanimously (``"Coca-Cola"`` x 10) can then never be
      matched, because the normalised prediction is ``"coca cola"``.

    Deviation, documented: for differing answers the official ``vqaEval.py`` applies only the
    punctuation step to the answers, not the digit/article step (its annotations need only
    that); here they get both steps, like the prediction, so ``"Two"`` among the references
    matches a predicted ``"2"``. On already-normalised annotations both give the same result.

    ``always_normalize_answers=True`` normalises the answers in every case, as the TextVQA
    evaluator used by LLaVA and lmms-eval does (its references are raw annotator strings);
    ``t2bench.tasks.textvqa`` scores that way.

    Raises :class:`~t2bench.errors.ConfigError` for an empty ``answers`` list or a bare string.
    """
    if isinstance(answers, str):
        raise ConfigError(
            f"vqa_accuracy: answers must be a list of strings (the human answers), got the "
            f"string {answers!r}; wrap a single reference as [answer]"
        )
    refs = [_clean_whitespace(a) for a in answers]
    if not refs:
        raise ConfigError(
            "vqa_accuracy: answers is empty; VQA accuracy needs the human answers of the item "
            "(normally 10). Items without answers (e.g. a test split with hidden labels) "
            "cannot be scored locally"
        )
    pred = normalize_answer(prediction)
    if always_normalize_answers or len(set(refs)) > 1:
        refs = [normalize_answer(a) for a in refs]
    total_matches = sum(ref == pred for ref in refs)
    scores = [min(1.0, (total_matches - (ref == pred)) / 3.0) for ref in refs]
    return sum(scores) / len(scores)


def clean_prediction(generation: str) -> str:
    """The answer to score from a model's raw ``generation``.

    Takes the first line that is non-empty after cleaning; cleaning strips surrounding
    whitespace, one leading ``Answer:`` or ``A:`` prefix (case-insensitive), surrounding
    quotes (``" ' `` and typographic quotes) and one trailing period. Returns ``""`` when
    no line has content. The result is not normalised (that is :func:`vqa_accuracy`'s job).

    >>> clean_prediction('  Answer: "Stop".\\nmore text')
    'Stop'
    """
    for line in str(generation).splitlines():
        text = _PREFIX.sub("", line.strip(), count=1)
        text = text.strip(_QUOTES_AND_SPACE)
        if text.endswith("."):
            text = text[:-1]
        text = text.strip(_QUOTES_AND_SPACE)
        if text:
            return text
    return ""
