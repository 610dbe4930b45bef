"""The offline writer's word lists: names, roles, flaws, voices, places and tones it draws
from (data, kept apart from the code in offline.py)."""

FIRST_NAMES = (
    "Mara Quill",
    "Tomas Reyes",
    "Ilse Varga",
    "Oren Blackwood",
    "Nadia Okafor",
    "Eli Marsh",
    "Juno Castellan",
    "Bram Hollis",
    "Sefa Adeyemi",
    "Wren Calloway",
    "Pilar Esteve",
    "Cass Linden",
    "Dov Aranoff",
    "Hana Moriyama",
    "Luca Ferrante",
    "Agnes Whitlock",
    "Teodor Anic",
    "Rosa Delane",
    "Kit Harrow",
    "Imre Szabo",
)
ROLES = ("protagonist", "antagonist", "ally", "mentor", "rival", "confidant", "wildcard")
FLAWS = (
    "cannot ask for help",
    "lies to keep the peace",
    "trusts too quickly",
    "keeps score",
    "runs from grief",
    "needs to be right",
    "hoards secrets",
    "mistakes control for care",
)
VOICES = (
    "clipped and dry",
    "warm, full of questions",
    "formal, careful with words",
    "quick, funny, deflecting",
    "quiet, then suddenly blunt",
    "lyrical and distracted",
)
PLACE_FIRST = (
    "Harbor",
    "Salt",
    "Lantern",
    "Gray",
    "North",
    "Cinder",
    "Reed",
    "Iron",
    "Hollow",
    "Bell",
)
PLACE_SECOND = (
    "Street",
    "Point",
    "Market",
    "Row",
    "Yard",
    "Quay",
    "Hill",
    "House",
    "Gate",
    "Archive",
)
TONES = ("wistful and tense", "dark but hopeful", "wry and warm", "quiet and uncanny")
