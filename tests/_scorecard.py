"""A hand-made project whose scorecard has a known answer: five planted faults, nothing else.

Planted:
- a repeated paragraph (``REPEATED``, in chapters 1 and 4);
- a stray character, ``Corwin``, who acts in chapter 2 but is not in the cast;
- chapter 3 told in the present tense (the premise says past);
- a duplicate title: chapters 2 and 4 are both "The Long Night";
- one stock phrase, "a testament to", in chapter 1.
Every chapter's target is its own length, every cast member appears, the point-of-view
character of each chapter is in it, and no chapter stops mid-sentence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import novelkit as nk
from novelkit._artefacts import count_words

__all__ = ["CAST", "PLANTED", "REPEATED", "planted_project", "write_planted"]

CAST = ("Ines Varga", "Tomas Reyes", "Mara Quell")
REPEATED = (
    "The lamp on the sill burned low, and the harbour below was a black field with one "
    "light crossing it."
)
STRAY = "Corwin"
PLANTED = {"repeated-paragraph", "stray-name", "tense", "duplicate-title", "slop"}

CHAPTERS: dict[int, tuple[str, str]] = {
    1: (
        "The Letter",
        f"""Ines Varga found the letter under the door when she came back from the pier. The envelope was damp at one corner, and her name on it was written in a hand she had not seen for nine years.

She carried it to the table and did not open it. Tomas Reyes was asleep in the chair by the stove, his boots still on, and she watched him for a while before she woke him.

“It came today,” she said. “I think it is from my brother.”

Tomas turned the envelope over twice. He said nothing for a long time, which was a testament to how well he knew her.

{REPEATED}

When at last she broke the seal, the paper inside held only a map of the north shore and a date.""",
    ),
    2: (
        "The Long Night",
        """Mara Quell kept the ferry office open past midnight because nobody had told her to close it. She heard the bell at the gate and looked up from the ledger.

Corwin crossed the yard with a lantern in his fist. Mara watched Corwin set it down on the counter as if he owned the building.

“You have a passenger for the north shore,” he said. “She will come before dawn.”

Mara asked him who had sent him, and he only smiled. When he left she locked the door behind him and sat for an hour with the lantern he had forgotten.

By the time the sky went grey, Ines was standing at the gate with a small bag and the folded map.""",
    ),
    3: (
        "The Crossing",
        """Tomas stands at the rail and watches the water go from black to pewter. The ferry is slow, and the engine knocks like a fist on a door.

Ines sits on the bench behind him with the map open on her knees. She looks at it as if it might change while she waits.

“We are almost there,” Tomas says. He turns to her and holds out his hand.

She takes it and stands. The shore is a grey line now, and above it the old signal tower is leaning into the wind.

Mara is at the wheel, and she does not look at either of them. She keeps the bow on the tower and says nothing until the hull touches sand.""",
    ),
    4: (
        "The Long Night",
        f"""The tower was empty when they reached it, but someone had swept the floor. Ines walked the ring of windows while Tomas lit the stove with the last of the dry wood.

{REPEATED}

Mara came up the stair an hour later with news from the village. A man had asked for Ines by name and paid for a room he never used.

“Then he knows we are here,” Tomas said.

Ines folded the map and put it in the stove. She watched it burn, and when it was ash she sat down beside him to wait for morning.""",
    ),
}


def _json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def write_planted(root: Path, *, chapters: dict[int, tuple[str, str]] | None = None) -> None:
    """Write the planted book's artefacts into an existing project folder ``root``."""
    chapters = chapters or CHAPTERS
    art = root / "artefacts"
    _json(
        art / "01-premise.json",
        {
            "logline": "A woman follows her lost brother's map to the north shore.",
            "genre": "literary fiction",
            "themes": ["return"],
            "tone": "quiet",
            "pov": "third person limited",
            "tense": "past",
            "premise": "A woman follows her lost brother's map to the north shore.",
        },
    )
    _json(
        art / "02-world.json",
        {
            "setting": "a northern harbour town",
            "era": "the 1950s",
            "locations": [{"name": "North Shore", "description": "a bare coast"}],
        },
    )
    people = []
    for name, role in zip(CAST, ("lead", "friend", "ferry keeper"), strict=True):
        people.append(
            {
                "name": name,
                "role": role,
                "description": "",
                "goal": "",
                "flaw": "",
                "arc": "",
                "voice": "",
                "relationships": [{"name": CAST[0], "kind": "friend"}] if name != CAST[0] else [],
            }
        )
    _json(art / "03-characters.json", {"characters": people})
    _json(
        art / "04-structure.json",
        {
            "central_conflict": "the letter",
            "ending": "ash",
            "acts": [
                {"number": 1, "name": "Setup", "summary": "", "beats": ["the letter"]},
                {"number": 2, "name": "Crossing", "summary": "", "beats": ["the ferry"]},
            ],
        },
    )
    povs = {1: CAST[0], 2: CAST[2], 3: CAST[1], 4: CAST[0]}
    _json(
        art / "05-chapters.json",
        {
            "chapters": [
                {
                    "number": n,
                    "title": title,
                    "summary": f"chapter {n}",
                    "pov": povs.get(n, CAST[0]),
                    "location": "North Shore",
                    "beats": [f"beat {n}"],
                    "target_words": count_words(text),
                    "tension": 2 * n,
                }
                for n, (title, text) in sorted(chapters.items())
            ]
        },
    )
    for n, (title, text) in chapters.items():
        path = art / "10-polish" / f"ch{n:02d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {title}\n\n{text}\n", encoding="utf-8")


def planted_project(root: Path, **config: Any) -> nk.Project:
    project = nk.new_project(root, premise="A woman follows her lost brother's map.", chapters=4)
    write_planted(root, **config)
    return project
