"""Corruptions defining the offline gibberish detector's classes (same names as the hub detector's):
clean = untouched, mild gibberish = a few local swaps/drops/duplications, word salad = shuffled words,
noise = random character strings. With `degenerate`, half of the word-salad examples are instead one word
or short phrase of the sentence repeated, and half of the noise examples symbol garbage (runs of brackets,
syllables, U+FFFD): what collapsed synthetic text looks like ("with with with", "}}}}ananan", "\ufffd\ufffd")."""

from __future__ import annotations

import random
import string

from bias_amp.metrics.sentences import split_sentences

QUALITY_CLASSES = ("clean", "mild gibberish", "word salad", "noise")
_CHARS = string.ascii_letters + string.digits + ".,;:!?'-&%$#@"


def noise(sentence: str, rng: random.Random) -> str:
    """Random characters, words of 1-10, about as long as the sentence."""
    n, words = max(len(sentence), 8), []
    while sum(len(w) + 1 for w in words) < n:
        words.append("".join(rng.choice(_CHARS) for _ in range(rng.randint(1, 10))))
    return " ".join(words)


def word_salad(sentence: str, rng: random.Random) -> str:
    """The sentence's words in a random order (never the original one when another exists)."""
    words = sentence.split()
    if len(set(words)) < 2:
        return sentence
    shuffled = words[:]
    while shuffled == words:
        rng.shuffle(shuffled)
    return " ".join(shuffled)


def mild_gibberish(sentence: str, rng: random.Random, rate: float = 0.2) -> str:
    """About `rate` of the positions get a local edit: swap with the next word, drop, or duplicate."""
    words = sentence.split()
    for _ in range(max(2, round(rate * len(words)))):
        if len(words) < 3:
            break
        i = rng.randrange(len(words) - 1)
        op = rng.choice(("swap", "drop", "dup"))
        if op == "swap":
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == "drop":
            del words[i]
        else:
            words.insert(i, words[i])
    return " ".join(words)


def repetition(sentence: str, rng: random.Random) -> str:
    """One to three consecutive words of the sentence repeated to about its length."""
    words = sentence.split()
    k = rng.randint(1, min(3, len(words)))
    i = rng.randrange(len(words) - k + 1)
    return " ".join((words[i:i + k] * len(words))[:max(len(words), 4)])


_SYMBOLS = "}{)(][><*=_-~/|\\#^\ufffd"


def garbage(sentence: str, rng: random.Random) -> str:
    """Runs of one symbol, syllable or replacement character, about as long as the sentence."""
    letters = [c for c in sentence.lower() if c.isalpha()] or ["a"]
    out = ""
    while len(out) < max(len(sentence), 8):
        unit = rng.choice([rng.choice(_SYMBOLS), rng.choice(letters) + rng.choice(letters), "\ufffd"])
        out += unit * rng.randint(2, 12) + rng.choice(["", "", " "])
    return out.strip()


def _either(a, b):
    return lambda s, rng: (a if rng.random() < 0.5 else b)(s, rng)


CORRUPTIONS = {"clean": lambda s, rng: s, "mild gibberish": mild_gibberish, "word salad": word_salad,
               "noise": noise}
DEGENERATE = CORRUPTIONS | {"word salad": _either(word_salad, repetition), "noise": _either(noise, garbage)}


def quality_examples(texts, seed: int = 0, min_words: int = 5, max_sentences: int | None = None,
                     all_classes: bool = False, degenerate: bool = False):
    """(text, class) pairs from the sentences of `texts` (deduplicated, >= min_words words), shuffled:
    each sentence is corrupted into one class in turn (balanced, every sentence once), or with
    `all_classes` into all four (contrastive pairs: the same words clean and corrupted). `degenerate` adds
    repetition and symbol garbage to the word-salad and noise classes."""
    rng = random.Random(seed)
    seen, sents = set(), []
    for text in texts:
        for s in split_sentences(text):
            if len(s.split()) >= min_words and s not in seen:
                seen.add(s)
                sents.append(s)
    rng.shuffle(sents)
    sents = sents[:max_sentences] if max_sentences else sents
    corrupt = DEGENERATE if degenerate else CORRUPTIONS
    if all_classes:
        return [(corrupt[c](s, rng), c) for s in sents for c in QUALITY_CLASSES]
    return [(corrupt[c](s, rng), c) for s, c in
            zip(sents, (QUALITY_CLASSES[i % 4] for i in range(len(sents))), strict=True)]
