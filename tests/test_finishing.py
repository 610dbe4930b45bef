"""The report's repeated-n-gram share, added up from per-chapter profiles."""

from __future__ import annotations

import re
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from novelkit.stages.finishing import ngram_profile, repeated_ngram_share


def counted_directly(texts: list[str], n: int) -> float:
    """The definition: count every n-gram of the manuscript, share of those seen twice or more."""
    counts: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        words = re.findall(r"[\w'’]+", text.lower())
        counts.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(counts.values())
    return sum(c for c in counts.values() if c > 1) / total if total else 0.0


# a tiny vocabulary, so that n-grams repeat within and across chapters
chapters = st.lists(
    st.lists(st.sampled_from(["sea", "Lamp", "the", "keeper's", "tide"]), max_size=40).map(
        " ".join
    ),
    max_size=5,
)


@given(texts=chapters, n=st.integers(min_value=1, max_value=4))
def test_share_matches_counting_the_whole_manuscript(texts: list[str], n: int) -> None:
    assert repeated_ngram_share(texts, n) == counted_directly(texts, n)


def test_a_chapter_repeated_in_full_counts_every_ngram_as_repeated() -> None:
    chapter = "the keeper lit the lamp and watched the tide come in over the rocks"
    assert repeated_ngram_share([chapter, chapter], 3) == 1.0
    assert repeated_ngram_share([chapter], 3) == 0.0


def test_profiles_are_computed_once_per_text() -> None:
    text = "a lamp in the window of the keeper's house, lit every night for years"
    first = ngram_profile(text, 4)
    assert ngram_profile(text, 4) is first
    assert first.total == len(text.split()) - 3
