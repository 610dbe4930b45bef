"""The motifs of a premise: its distinctive nouns, which the draft prompts carry as images and
objects, and which the offline writer writes with."""

from __future__ import annotations

import functools
import re

__all__ = ["motifs"]

_STOP = frozenset(
    "about after again their there which while where would could should these those being "
    "other under every something through with from into that this then than they them were "
    "have been what when will your over only just also some each very more most such must upon "
    "onto whom whose does done made make before during until because against among between "
    "without within toward towards across behind beyond since though although unless whether "
    "himself herself themselves itself nothing anything everything someone anyone everyone "
    "nobody somebody another always never often still even once soon here away back down says "
    "said goes went gets came comes knows knew takes took find finds found tells told might "
    "shall ever spoke year years time times life lives way ways thing things story".split()
)
# words that are rarely nouns: adjectives and verbs a premise often carries
_NOT_NOUNS = frozenset(
    "young little small great strange quiet dark ancient lonely broken hidden forgotten golden "
    "silent distant beautiful famous former final first last other same whole new old long "
    "short tiny huge large cold warm dead alive lost free true real only late early remote "
    "rural local secretive mysterious grieving estranged reclusive elderly stubborn bitter "
    "brave wealthy poor rich blind deaf sick wants needs tries learns must begins returns "
    "discovers uncovers inherits receives becomes decides meets loses keeps hides seeks search "
    "searches follows struggles fights wrote broke chose stole gave fell rose sank left kept "
    "held return discover uncover inherit receive become decide seek follow".split()
)
_ADJ_IVE = frozenset(
    "elusive massive expensive naive furtive protective possessive abusive attractive "
    "aggressive defensive impulsive sensitive secretive reclusive native active passive".split()
)
_SUFFIX_NOUNS = frozenset(  # nouns that end like verbs or adverbs
    "ring string spring wedding building painting evening morning ceiling clothing wing king "
    "sibling darling stocking family belly jelly lily ally folly bully rally assembly supply "
    "holly gully seed shed reed creed steed sled weed tweed speed greed".split()
)
_DETERMINERS = frozenset(
    "a an the her his their my its our your this that these those every some each one two three".split()
)
_SUBJECTS = frozenset(
    "she he they who i we it you which that to nobody someone everyone never ever".split()
)
_CONCRETE = ("letter", "lamp", "river", "key", "photograph", "boat")


def motifs(premise: str) -> list[str]:
    """Distinctive nouns of the premise, used as images and objects in the prose (worked out
    once per premise: every chapter's draft asks)."""
    return list(_motifs(premise))


@functools.lru_cache(maxsize=16)
def _motifs(premise: str) -> tuple[str, ...]:
    """:func:`motifs`, uncached.

    Simple heuristics keep nouns only: no function words, no words ending in -ed, -ly or -ing
    (bar a few nouns such as "ring" or "family"), no common adjectives or verbs, no word right after a
    subject pronoun or "to" (a verb), none right before a determiner ("finds a letter"), and no
    proper names mid-sentence. Falls back to concrete objects when nothing is left.
    """
    tokens = re.findall(r"[A-Za-z][A-Za-z-]*|[.!?;:]", re.sub(r"['’]s\b", "", premise))
    seen: list[str] = []
    for i, token in enumerate(tokens):
        word = token.lower()
        if not word.isalpha() or len(word) < 4 or word in _STOP or word in _NOT_NOUNS:
            continue
        if word.endswith(("ed", "ly", "ing")) and word not in _SUFFIX_NOUNS:
            continue
        if word.endswith(("ous", "ful", "less", "able", "ible", "ish")) or word in _ADJ_IVE:
            continue
        before = tokens[i - 1].lower() if i else "."
        after = tokens[i + 1].lower() if i + 1 < len(tokens) else "."
        if before in _SUBJECTS or after in _DETERMINERS:
            continue
        if token[0].isupper() and before not in ".!?;:":
            continue  # a name
        if word not in seen:
            seen.append(word)
    return tuple(seen[:8] or _CONCRETE[:3])
