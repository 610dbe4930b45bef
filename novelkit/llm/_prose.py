"""Template prose for the offline backend: readable, varied, built from the chapter's material.

Sentences are put together from a small grammar: a sentence template names slots
(``{S}`` the subject, ``{object}`` a thing, ``{tail}`` a trailing clause, ...) and inline
choices (``[a|b|c]``), and every slot is drawn afresh each time it is used. The many choices
per sentence keep twelve-word windows from repeating across a long manuscript, while the
material (cast, places, goal, conflict, beat, outcome, motifs, voices) keeps it on story.

Everything is drawn from the ``rng`` passed in, so the same seed writes the same chapter.
"""

from __future__ import annotations

import random
import re
from typing import Any

SCENE_BREAK = "* * *"

_CHOICE = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"[\w'’-]+")

# --------------------------------------------------------------------------------------------
# Word pools: things, sounds, light and weather, feelings. Plain nouns and noun phrases.
# --------------------------------------------------------------------------------------------


def _split(options: str) -> tuple[str, ...]:
    return tuple(options.split("|"))


_POOLS: dict[str, tuple[str, ...]] = {
    "object": _split(
        "letter|key|photograph|ledger|compass|ring|map|lantern|tin box|pocket knife|envelope|"
        "notebook|pair of gloves|length of rope|teacup|glass float|pencil stub|postcard|"
        "brass button|tide table|candle stub|pair of spectacles|fishing hook|matchbox|cap|scarf|"
        "coin|thimble|spool of thread|paper bag|bottle|jar of buttons|oilcloth parcel|whistle"
    ),
    "surface": _split(
        "table|windowsill|counter|bench|crate|mantelpiece|arm of the chair|bottom stair|"
        "workbench|dresser|trunk|sideboard|ledge|tabletop|draining board|stool|barrel lid|shelf"
    ),
    "fixture": _split(
        "window|stove|door|stairs|lamp|shelf|sink|hearth|railing|clock|coat hooks|dresser|kettle|"
        "shutters|skylight|wireless set"
    ),
    "glass": _split("window|pane|skylight|porthole window|glass of the door|mirror"),
    "opening": _split("door|window|shutter|gate|hatch|back door|curtain"),
    "sound": _split(
        "rain on the roof|gulls|kettle|wind in the wires|tide against the wall|foghorn|"
        "loose shutter|ticking pipes|clock|dripping tap|rope slapping a mast|"
        "bell on the harbour buoy|dog two doors down|creak of the stairs|sea|hum of the stove|"
        "rattle of the window|traffic on the wet road|halyards"
    ),
    "smell": _split(
        "tar|wet wool|coal smoke|salt|bread|paraffin|seaweed|old paper|diesel|rain|soap|rust|"
        "fish|boiled coffee|damp plaster|pipe tobacco|lamp oil|cold ash|wet rope|vinegar|"
        "mothballs|sawdust"
    ),
    "light": _split(
        "grey|thin|yellow|low|the colour of slate|amber|silver|brown|blue|pale|milky|"
        "hard and white|the colour of weak tea|dim|bruised"
    ),
    "weather": _split("rain|fog|wind|sleet|dark|mist|cold|drizzle|weather"),
    "weather_adj": _split(
        "grey and quiet|loud with rain|bright and windless|wrapped in fog|bitter cold|"
        "wet and shining|half asleep|empty|restless with wind|dim|colder than it looked|"
        "smaller than remembered|thick with mist|noisy|very still"
    ),
    "time": _split(
        "morning|evening|afternoon|dusk|small hours|early morning|late afternoon|first light|"
        "supper hour|long evening|tail end of the day"
    ),
    "emotion": _split(
        "anger|shame|longing|fear|grief|relief|hope|dread|guilt|tenderness|impatience|pity|"
        "stubbornness|loneliness|resentment|doubt"
    ),
    "body": _split("chest|throat|stomach|jaw|shoulders|hands|ribs|temples"),
    "small_thing": _split(
        "cup of cold tea|folded newspaper|child's shoe|coil of twine|chipped saucer|"
        "pair of boots|stack of unopened post|half-eaten apple|box of matches|cracked mug|"
        "ball of wool|tobacco tin|dead moth|sewing basket"
    ),
    "memory": _split(
        "the last winter at {place}|a promise that had not been kept|the summer of the storm|"
        "their mother's hands|a door left open one night|the smell of the old kitchen|"
        "the boats coming in late|a quarrel nobody had finished|the day the letters stopped|"
        "how young they had all been|the long walk home in the rain|a funeral in the fog|"
        "the first time {sp} had lied to {xn}|the sound of {xn} laughing, years ago"
    ),
    "participle": _split(
        "counting the reasons to leave and finding too few|wet through and not caring|"
        "tired in a way that sleep would not fix|carrying more than {sd} bag|"
        "rehearsing what {sn} would say|half hoping nobody would be there|"
        "with {sd} collar turned up against the {weather}|still thinking about the {motif}|"
        "later than {sn} had meant to be|with the {object} in {sd} pocket|already regretting it|"
        "hands deep in {sd} pockets"
    ),
    "manner": _split(
        "|||||||||| quietly| at last| without looking up| after a moment| evenly| softly| flatly|"
        " more gently| to the floor| under the {sound}"
    ),
}

_PARTS = ("hand", "palm", "fingers", "lap", "pocket", "fist")


# --------------------------------------------------------------------------------------------
# Sentence grammar. {S} the subject (a name, or the pronoun), {sn} the subject's name,
# {sp} pronoun, {so} object pronoun, {sd} possessive, {sr} reflexive; {xn} {xo} {xd} the
# other person in the scene. Inline choices are [a|b|c]; an empty option is allowed.
# --------------------------------------------------------------------------------------------

_GRAMMAR: dict[str, tuple[str, ...]] = {
    "lead": (
        "For a while, ",
        "Without a word, ",
        "At last, ",
        "After a moment, ",
        "Slowly, ",
        "In the quiet that followed, ",
        "For something to do, ",
        "Without meaning to, ",
        "Out of habit, ",
        "Carefully, ",
        "Across the room, ",
        "By the {fixture}, ",
        "Then ",
        "When the {sound} started up again, ",
        "Before {xn} could speak, ",
        "With an effort, ",
        "Not knowing what else to do, ",
        "Deliberately, ",
        "A moment later, ",
        "Eventually, ",
    ),
    "vp": (
        "picked up the {object} and [weighed it in|turned it over in|closed it in] {sd} {part}",
        "set the {object} on the {surface}[| with great care| as if it might break| and stepped back]",
        "[went|crossed] to the {fixture} and [stood there|looked out|waited|stayed there a while]",
        "ran {sd} [thumb|finger|knuckles] along the [edge|grain|rim|lip] of the {surface}",
        "pulled {sd} [coat|collar|shawl|cardigan|jacket] [tighter|closer] [against the {weather}|around {sr}]",
        "[watched|studied|searched] {xn}'s [face|hands|mouth|shoulders] [for a sign|for the lie|for anything]",
        "[listened to|counted the beats of] the {sound}",
        "kept {sd} [voice|hands|face|eyes] [steady|still|level|on the {object}]",
        "[looked|glanced] [past|beyond|over] {xn} at the {fixture}",
        "[folded|unfolded] {sd} arms [and waited|and looked away|and then thought better of it]",
        "[rubbed|pressed] {sd} [eyes|temples] [hard|with the heels of {sd} hands|until they ached]",
        "took a [slow|long|careful|shallow|ragged] breath [and held it|and let it go|through {sd} nose]",
        "[leaned|rested] [against|on] the {surface} [and waited|to steady {sr}|as if it belonged to {so}]",
        "sat down on the [edge of the {surface}|{surface}|bottom stair|upturned crate]",
        "[moved|pushed|nudged] the {object} [an inch|a little|closer] towards {xn}",
        "wiped the [salt|damp|dust|condensation] from the {glass} [with a sleeve|with the flat of a hand|and looked out]",
        "[opened|closed] the {opening} [against the {weather}|without a sound|halfway|and let the {weather} in]",
        "let the silence [stretch|settle|do the work|run on] [a while|longer than was kind|between them]",
        "lit the [lamp|candle|stove|gas ring] [with unsteady hands|out of habit|for something to do]",
        "straightened the {object} on the {surface} [twice|without looking at it|for no reason]",
        "[filled|rinsed|dried] the kettle [and set it on the stove|and forgot about it|slowly]",
        "[found|fished out] the {object} from {sd} [coat|bag|pocket] [and frowned at it|and put it away again]",
        "[stood|waited] by the {fixture} with {sd} back to {xn}",
        "[turned|looked] away [from {xn}|from the {fixture}|towards the {opening}] [at last|too late|quickly]",
        "[nodded|shrugged], [as if that settled it|though nothing was settled|and did not explain]",
        "[tapped|drummed] {sd} fingers on the {surface}[| in a slow rhythm| and stopped]",
        "[bent|knelt] to [pick up|retrieve] the {small_thing} [from the floor|that had fallen]",
        "[checked|looked at] the clock [again|for the third time|without seeing it]",
        "[poured|made] two cups of [tea|coffee|something hot] that [neither of them drank|went cold on the {surface}]",
        "crossed [the room|the floor|to the {fixture}] in [three|four|a few|two long] [strides|steps|paces] and [stopped|halted|stood] [short of {xn}|by the {fixture}|at the {opening}]",
    ),
    "tail": (
        "",
        "",
        "",
        "",
        ", [listening|waiting] for {X} to [speak|move|look up|say it]",
        " [while|as] the {sound} [went on|filled the pause|carried on outside]",
        ", [thinking of|remembering] {memory}",
        " until {sd} [hands|breathing|heart|pulse] [steadied|slowed|settled|quietened]",
        ", aware of {X} [watching|waiting|not moving|breathing]",
        ", the old {emotion} [rising|settling|sharp|heavy] in {sd} {body}",
        ", [not quite|almost|nearly] [ready|willing|able] to [look at|answer|face] {X}",
        " and [said nothing|kept quiet|let it pass]",
        ", [as if|as though] the {motif} [might|could] [explain it|answer for it|speak]",
        ", [because|since] there was nothing [else|better] to do with {sd} hands",
    ),
    "gesture": (
        "shook {sd} head",
        "looked up",
        "set down {sd} cup",
        "did not look up",
        "leaned back",
        "folded {sd} hands",
        "turned to the {fixture}",
        "let out a breath",
        "rubbed {sd} jaw",
        "glanced at the {object}",
        "stepped closer",
        "put the {object} down",
        "smiled, barely",
        "frowned at the {surface}",
        "stood very still",
        "laughed, short and without pleasure",
        "waited a long moment",
        "pushed {sd} hair back",
        "straightened",
        "tilted {sd} head",
    ),
    "desc": (
        "Outside, the {weather} [pressed|leaned|worried] at the {glass}[| as if it wanted to listen| like something patient].",
        "The {sound} [came and went|rose and fell|started up again|stopped, then started again][| somewhere below| beyond the walls].",
        "The room smelled of {smell} and {smell}[| and, faintly, of {smell}].",
        "{place} had its own [noises|weather|quiet] at this hour: the {sound}, the {sound}.",
        "The light through the {glass} had gone {light}[| and thin| without anyone noticing].",
        "A {small_thing} sat on the {surface}, [forgotten|where someone had left it|going nowhere].",
        "Nobody had [swept|mended|polished|touched] the {fixture} in [weeks|years|a long time|living memory].",
        "[Down on the front|Beyond the harbour wall|Across the street|Further off], the {sound} [kept time|went on regardless|answered].",
        "The {weather} had [come in|thickened|lifted a little|settled] over {place}[| while they talked| without a sound].",
        "There was {smell} on the air and [salt|grit|damp|frost] on the {fixture}.",
        "[Somewhere|Below them|Above them], a {opening} [banged|knocked|creaked] [twice|and was still|in the draught].",
        "The clock [said|showed] [a quarter past four|nearly ten|half past six|ten to midnight][| and was wrong| and had said so for years].",
        "A [draught|cold breath|thread of air] [came|crept] under the {opening} and [moved|stirred|lifted] the [curtain|papers|ash in the grate].",
        "It was [the kind of|one of those] {time}s when [nothing|no one|the whole town] [moved|seemed to breathe|wanted to be out].",
    ),
    "inner": (
        "{S} thought about the {motif}[, and about {memory}| again| and could not stop| more than was useful].",
        "It [occurred to|struck|came to] {sn} [then|suddenly|slowly|, not for the first time,] that {realisation}.",
        "What [frightened|troubled|unsettled|stung] {sn} [most |]was not {xn} but {fear}.",
        "{S} felt the old {emotion} [rise|return|stir|come back], [familiar as a coat|like weather coming in|and let it|and did not fight it].",
        "[Ever since|Since the {time}] {beat_past}, [nothing|no part of {place}|no single day|not one thing] had [felt right|sat quite right|gone the way it should|been simple].",
        "[Everything|All of it|Whatever {sp} did] [kept coming back to|came back to|turned on] [one thing|the same thing|a single fact|the plain fact]: {beat_perf}.",
        "{S} had come [to {place}|all this way|out in the {weather}|here] to {goal}[, and {sd} nerve was going| and was losing {sd} nerve| and meant to do it|, nothing more].",
        "[There was a version of|{sn} could picture] [this {time}|the {time}|the rest of the {time}] in which {sn} [simply went home|said nothing at all|never came|let {xn} win][. {sp_cap} could almost see it|, and it looked like cowardice|, and it was not this one|].",
        "It would have been [easier|simpler|kinder|safer] to [lie|leave|say nothing|give in]; {sn} had [always|never once|mostly] [been good at|chosen|wanted] the easy thing.",
        "[Every answer|Each thing {sp} had learned|Every question] [so far|this week|since the {motif}] had cost [something|{so} something|more than it should], and {sn} was running out of [things to spend|patience|nights like this|courage].",
        "The {motif} meant something to {xn}; {sn} could [see|read] it in the set of {xd} [jaw|shoulders|mouth].",
        "{S} [remembered|could not help remembering|thought again of] {memory}[, and wished {sp} did not| with a strange calm| and looked away].",
        "[Part of|Some stubborn part of|A small, tired part of] {sn} still [wanted|hoped|meant] to {goal}.",
        "{S} counted to [ten|twenty], the way {sd} [mother|father|grandmother|first teacher] had [taught|shown] {so}, and got as far as [six|four|seven|three].",
        "[It was|This was] not what {sn} had [pictured|expected|rehearsed] [on the way|all week|on the long walk over|in the {weather}].",
        "{S} [knew|suspected|understood] that {realisation}, and [hated it|said nothing|kept it close|held on to that].",
        "[If|Perhaps if] {sn} could {goal}, [then|] the rest [might|would] [follow|come right|take care of itself].",
        "{sn} [wondered|asked {sr}] whether {xn} [remembered|still thought about|had forgotten] {memory}.",
        "The {emotion} [was|sat] [still there|close under the skin|quiet now] [, and {sn} let it be|, waiting|, like a tide out], which [surprised|frightened|steadied] {so}.",
    ),
    "realisation": (
        "{xn} had known all along",
        "the {motif} had never been the real question",
        "nobody at {place} would say it plainly",
        "{sp} was the one being tested",
        "the {object} had been moved",
        "{xn} was more afraid than {sp} was",
        "the truth would cost more than {sp} had",
        "{beat_perf}",
        "this was the last chance",
        "{xn} was waiting for {so} to give up",
        "the story {sp} had been told was missing a piece",
        "{xn} had been lying [for years|from the start|about the {motif}]",
        "nothing here was accidental",
    ),
    "fear": (
        "how much {sp} wanted {xn} to be right",
        "how easily the lie would come",
        "what the {motif} might turn out to mean",
        "the quiet afterwards",
        "being believed",
        "how little time was left",
        "how familiar all of it felt",
        "what {sp} might say next",
    ),
    "turn": (
        "[And still|But|Even so|All the same], {conflict}[, as {xd} had from the start| and showed no sign of moving| without apology| and {sn} saw it plainly].",
        "That was [when|the moment] {sn} [understood|saw|accepted|could no longer pretend] that {conflict}.",
        "It [should|might|could] have ended there[. It did not| and did not|, but it did not], because {conflict}.",
        "The [talk|argument|quarrel] [circled|wandered|went round], came back, and [landed|settled|stopped] where it [always did|had to|began]: {beat_perf}.",
        "{S} had [one chance|one more chance|a single chance|a last chance] to {goal}, and {xn} [knew it too|was not going to make it easy|had seen it coming].",
        "[Then|And then] {xn} [said the one thing|made it plain|stopped pretending], and {sn} saw that {conflict}.",
        "[Whatever {sn} tried|Whatever {sn} said|However hard {sn} pushed], {conflict}[; that much was clear now|, and the room knew it|].",
    ),
    "close": (
        "In the end it [came|came down|amounted] to {outcome}, and {sn} [did not know yet|could not tell|was not sure] whether that was [enough|a mercy|a beginning].",
        "They left {place} [separately|one after the other|without looking back], carrying {outcome} between them like something [breakable|borrowed|stolen].",
        "Later, {sn} would remember only this: {outcome}, and the {motif} [cold in|heavy in|in] {sd} mind.",
        "It was {outcome}[. It was not what {sn} had come for, but it was something|, and {sn} took it|; it would have to do].",
        "By the time {sn} [stepped out of|left|walked away from] {place}, all {sp} had to show for it was {outcome}.",
        "[So|And so] it [ended|finished] in {outcome}[, on a {time} like any other|, under the {sound}|, at {place}].",
        "{outcome_cap}, then. [It would have to do|{sn} could live with that, for now|It was more than {sp} had come with].",
        "When the door closed behind {xn}, what was left was {outcome}[ and the {sound}| and the {object} on the {surface}].",
        "{S} [walked|went] [home|out] [through the {weather}|the long way|along the front] with {outcome} [to carry|for company|and nothing else].",
    ),
    "open": (
        "{place} was {weather_adj} when {sn} arrived, and the {motif} was the first thing {sp} [thought of|saw|could not ignore].",
        "By the time {sn} reached {place}, the light had gone {light}[ and the air smelled of {smell}| and the street was empty].",
        "The {time} found {sn} at {place}, {participle}.",
        "Nobody at {place} looked up when {sn} came in[, which was its own kind of welcome| out of the {weather}].",
        "For {sn} it [began|started], as these things did, with the {motif}, and with {xn} waiting at {place}.",
        "{sn} [came|walked] to {place} [through the {weather}|by the long way|on foot], {participle}.",
        "{place} in the {time}, as {sn} found it: {smell}, the {sound}, and {xn} [already there|waiting|nowhere to be seen].",
        "{sn} had [promised|sworn] never to come back to {place}. {sp_cap} came back anyway[, {participle}|].",
        "[The|A] {weather} [hung|lay|moved] over {place} [when|as] {sn} [got there|pushed open the {opening}], {participle}.",
    ),
    "after": (
        "The night before still clung to everything. ",
        "Nothing from yesterday had been settled. ",
        "Sleep had not helped. ",
        "The morning had not made anything simpler. ",
        "Whatever had been said last night was still in the air. ",
        "",
    ),
}

# Dialogue: cores, which are whole lines, then prefixes and tails; voices colour them.
_LINES: tuple[str, ...] = (
    "You [already|] know what this is",
    "I kept [it|the {object}] because nobody else would",
    "Tell me what happened at {place}",
    "It isn't yours to [give back|keep|decide]",
    "We said we would stop pretending",
    "You were [there|at {place}], weren't you",
    "I never asked you to [protect|rescue|lie for] me",
    "If we do this, there is no [undoing|taking back] it",
    "The {motif} was never the point",
    "You should go before the [tide turns|light goes|weather closes in]",
    "I thought I could carry [it|this] alone",
    "Say it plainly, for once",
    "Nobody at {place} will [talk|say it|tell you]",
    "I [saw|found|heard about] the {motif}",
    "You don't get to [decide that|ask me that|be angry about it]",
    "I'm not [leaving|going anywhere] until you [tell me|explain]",
    "It was never about [you|the {motif}|{place}]",
    "There's [more|something] you're not telling me",
    "I can't [do this|keep doing this] [again|tonight|here]",
    "You [should|ought to] have [told me|come to me|written]",
    "Everyone at {place} [knew|knows]",
    "I didn't come here to [fight|argue|beg]",
    "That isn't [an answer|what I asked]",
    "Not [tonight|here|like this]",
    "I know what [I saw|you did|the {motif} means]",
    "You're asking me to [choose|forget|lie]",
    "It's [late|cold|been a long day], and I'm tired of this",
    "We both know how this ends",
    "I'd [rather|sooner] hear it from you",
    "[Give|Show] me the {object}",
    "I found it [in the {surface}|under the {surface}|at {place}]",
    "The {object} [proves|changes|means] nothing",
    "Stay. [Please|Just for tonight|Just until the {weather} lifts]",
    "I [kept|wrote] [every|each] letter",
    "You [haven't|have not] changed at all",
)
_QUESTIONS: tuple[str, ...] = (
    "Who else knows",
    "What do you want from me",
    "Why now, after all this time",
    "What became of the {motif}",
    "How long have you known",
    "Where were you [that night|when it happened]",
    "Did you ever [mean|intend] to tell me",
    "What are you so afraid of",
    "Is that why you came back",
    "Who told you about the {motif}",
    "What did you [see|find] at {place}",
    "You think I don't know",
    "Do you [remember|still think about] {memory}",
    "What [would|will] you do if I say no",
    "Why keep the {object}",
    "Is it true",
    "Are you going to tell me or not",
    "Whose {object} is that",
)
_PREFIX: tuple[str, ...] = (
    "Look, ",
    "Listen, ",
    "Please. ",
    "{xn}, ",
    "No. ",
    "All right. ",
    "I know. ",
    "Honestly, ",
)
_SUFFIX: tuple[str, ...] = (", {xn}", ", {xn}", ", and you know it", ", whatever you think")
_VOICE_EXTRA: dict[str, tuple[str, ...]] = {
    "blunt": ("You lied", "Just say it", "That's not good enough", "I'm done waiting", "Stop"),
    "funny": (
        "Lovely weather for it",
        "That went well",
        "I've had worse evenings. Not many",
        "Cheerful, isn't it",
        "Don't all thank me at once",
    ),
    "lyrical": (
        "It's like the {weather} coming in off the water",
        "Some things only come back at night",
        "The {motif} remembers more than we do",
        "Everything here smells of {smell} and endings",
    ),
    "warm": (
        "Are you all right",
        "Have you eaten",
        "Tell me, then",
        "Is it very bad",
        "Do you want to sit down",
        "What do you need from me",
    ),
    "clipped": ("Fine", "No", "Later", "Go home", "Enough", "Leave it", "Not now", "Your call"),
    "formal": (
        "I would prefer not to",
        "That is not my concern",
        "I must ask you to leave it",
        "I believe you are mistaken",
        "With respect, that was not our arrangement",
        "I shall say this once",
        "You will forgive me if I do not answer",
    ),
}
_TAG_MANNER: dict[str, tuple[str, ...]] = {
    "blunt": ("", " flatly", " after a long silence", " bluntly"),
    "funny": ("", " lightly", " with a crooked smile", " too brightly"),
    "lyrical": ("", " half to the window", " dreamily", " as if from far off"),
    "warm": ("", " gently", " softly", " kindly"),
    "clipped": ("", "", " shortly"),
    "formal": ("", " carefully", " precisely", " after some thought"),
}
_CONTRACTIONS = (
    ("isn't", "is not"),
    ("don't", "do not"),
    ("can't", "cannot"),
    ("I'm", "I am"),
    ("won't", "will not"),
    ("you're", "you are"),
    ("You're", "You are"),
    ("There's", "There is"),
    ("weren't", "were not"),
    ("haven't", "have not"),
    ("didn't", "did not"),
    ("It's", "It is"),
    ("I'd", "I would"),
    ("That's", "That is"),
    ("Don't", "Do not"),
)

# Past tense and past participle of verbs that often open a beat ("Rosa finds the lighthouse").
_IRREGULAR: dict[str, tuple[str, str]] = {
    "is": ("was", "been"),
    "are": ("were", "been"),
    "has": ("had", "had"),
    "finds": ("found", "found"),
    "makes": ("made", "made"),
    "takes": ("took", "taken"),
    "strikes": ("struck", "struck"),
    "stands": ("stood", "stood"),
    "tells": ("told", "told"),
    "pays": ("paid", "paid"),
    "chooses": ("chose", "chosen"),
    "breaks": ("broke", "broken"),
    "comes": ("came", "come"),
    "goes": ("went", "gone"),
    "leaves": ("left", "left"),
    "loses": ("lost", "lost"),
    "keeps": ("kept", "kept"),
    "gets": ("got", "got"),
    "gives": ("gave", "given"),
    "knows": ("knew", "known"),
    "sees": ("saw", "seen"),
    "hides": ("hid", "hidden"),
    "runs": ("ran", "run"),
    "falls": ("fell", "fallen"),
    "meets": ("met", "met"),
    "brings": ("brought", "brought"),
    "holds": ("held", "held"),
    "speaks": ("spoke", "spoken"),
    "writes": ("wrote", "written"),
    "wins": ("won", "won"),
    "becomes": ("became", "become"),
    "begins": ("began", "begun"),
    "says": ("said", "said"),
    "sends": ("sent", "sent"),
    "feels": ("felt", "felt"),
    "fights": ("fought", "fought"),
    "forgets": ("forgot", "forgotten"),
    "forgives": ("forgave", "forgiven"),
    "hears": ("heard", "heard"),
    "rises": ("rose", "risen"),
    "sinks": ("sank", "sunk"),
    "steals": ("stole", "stolen"),
    "swears": ("swore", "sworn"),
    "thinks": ("thought", "thought"),
    "throws": ("threw", "thrown"),
    "wakes": ("woke", "woken"),
    "does": ("did", "done"),
    "catches": ("caught", "caught"),
    "leads": ("led", "led"),
    "reads": ("read", "read"),
    "flees": ("fled", "fled"),
    "buys": ("bought", "bought"),
    "sells": ("sold", "sold"),
    "builds": ("built", "built"),
    "lies": ("lies", "lain"),
    "stops": ("stopped", "stopped"),
    "sits": ("sat", "sat"),
    "lets": ("let", "let"),
    "puts": ("put", "put"),
    "shuts": ("shut", "shut"),
    "digs": ("dug", "dug"),
}
_ARTICLES = ("a", "an", "the", "his", "her", "their", "its", "one", "every", "no", "some", "this")

_PRONOUNS = {
    "she": ("she", "her", "her", "herself"),
    "he": ("he", "him", "his", "himself"),
    "they": ("they", "them", "their", "themselves"),
}
_FEMININE = {"Mara", "Ilse", "Nadia", "Juno", "Sefa", "Wren", "Pilar", "Hana", "Agnes", "Rosa"}
_NEUTRAL = {"Cass", "Kit", "Eli"}


def _pronouns(name: str) -> tuple[str, str, str, str]:
    first = name.split()[0] if name else ""
    if first in _FEMININE:
        return _PRONOUNS["she"]
    if first in _NEUTRAL or not first[:1].isupper():
        return _PRONOUNS["they"]
    return _PRONOUNS["he"]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _count(text: str) -> int:
    return len(_WORD.findall(text))


def _past(verb: str) -> tuple[str, str] | None:
    """Past tense and participle of a third-person present verb, or None if it is not one."""
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if not verb.endswith("s") or verb.endswith(("ss", "us", "is")) or len(verb) < 3:
        return None
    if verb.endswith("ies") and len(verb) > 4:
        form = verb[:-3] + "ied"
    elif verb.endswith(("ches", "shes", "sses", "xes", "zes")):
        form = verb[:-2] + "ed"
    elif verb[:-1].endswith("e"):
        form = verb[:-1] + "d"
    else:
        form = verb[:-1] + "ed"
    return form, form


class _Clause:
    """A piece of material ("Rosa finds the lighthouse", "a truce") in forms the prose can use."""

    def __init__(self, text: str, names: list[str]) -> None:
        text = text.strip().rstrip(".!").strip()
        for name in sorted(names, key=len, reverse=True):
            if " " in name:
                text = text.replace(name, name.split()[0])
        self.text = text
        self.subject = ""
        self.verb: tuple[str, str] | None = None
        self.rest = ""
        words = text.split()
        start = 0
        if words and words[0][:1].isupper() and words[0].lower() not in _ARTICLES:
            start = 1
            while start < len(words) - 1 and words[start][:1].isupper():
                start += 1
        elif words and words[0].lower() in _ARTICLES:
            start = 1
            while start < len(words) and _past(words[start]) is None:
                start += 1
            if start >= len(words):
                start = 0
        if 0 < start < len(words):
            verb = _past(words[start])
            if verb is not None:
                self.subject = " ".join(words[:start])
                if self.subject.split()[0].lower() in _ARTICLES:
                    self.subject = _lower_first(self.subject)
                self.verb = verb
                self.rest = " ".join(words[start + 1 :])

    @property
    def is_clause(self) -> bool:
        return self.verb is not None

    def past(self) -> str:
        if self.verb is None:
            return f"it came to {_lower_first(self.text)}"
        return " ".join(p for p in (self.subject, self.verb[0], self.rest) if p)

    def perfect(self) -> str:
        if self.verb is None:
            return f"it had come to {_lower_first(self.text)}"
        return " ".join(p for p in (self.subject, "had", self.verb[1], self.rest) if p)

    def noun(self) -> str:
        """A noun phrase: the object of the clause ("the lighthouse"), or the text itself."""
        if self.verb is None:
            return _lower_first(self.text)
        rest = self.rest.split()
        if rest and rest[0].lower() in ("the", "a", "an", "his", "her", "their"):
            return self.rest
        return ""


class _Writer:
    def __init__(self, ctx: dict[str, Any], rng: random.Random) -> None:
        self.rng = rng
        self.ctx = ctx
        self.motifs: list[str] = [m for m in (ctx.get("motifs") or []) if m] or ["letter"]
        self.recent: dict[str, list[int]] = {}
        self.seen_keys: set[str] = set()
        self.seen_raw: set[str] = set()
        self.voices: dict[str, str] = {}
        for person in ctx.get("cast") or []:
            if isinstance(person, dict) and person.get("name"):
                self.voices[str(person["name"]).split()[0]] = str(person.get("voice", ""))
        self.names: list[str] = [
            str(p["name"]) for p in ctx.get("cast") or [] if isinstance(p, dict) and p.get("name")
        ]
        self.values: dict[str, str] = {}
        self.last_subject = ""
        self.x_named = False

    # ---- material -----------------------------------------------------------------------
    def set_scene(self, scene: dict[str, Any]) -> None:
        cast = [str(c) for c in scene.get("cast") or []] or ["the stranger"]
        names = self.names + [c for c in cast if c not in self.names]
        self.pov = cast[0].split()[0] if cast[0][:1].isupper() else cast[0]
        others = [c for c in cast[1:] if c != cast[0]]
        other = others[0] if others else "the stranger"
        self.other = other.split()[0] if other[:1].isupper() else other
        self.place = str(scene.get("location") or "the house")
        beat = _Clause(str(scene.get("beat", "")) or "the trouble began", names)
        conflict = _Clause(
            str(scene.get("conflict", "")) or f"{self.other} stands in the way", names
        )
        outcome = _Clause(str(scene.get("outcome", "")) or "an uneasy quiet", names)
        self.beat, self.conflict, self.outcome = beat, conflict, outcome
        self.goals = self._goals(str(scene.get("goal", "")), beat, names)

    def _goals(self, goal: str, beat: _Clause, names: list[str]) -> list[str]:
        match = re.match(r"^(?:[A-Z][\w'’-]*\s+)*wants?\s+to\s+(.+)$", goal.strip().rstrip("."))
        infinitive = match.group(1) if match else ""
        if infinitive.startswith("settle "):
            settled = _Clause(infinitive[len("settle ") :], names)
            if settled.is_clause and settled.subject != self.pov:
                settled.rest = re.sub(rf"\b{re.escape(self.pov)}\b", "{so}", settled.rest)
            if settled.is_clause:
                noun = settled.noun()
                if noun:
                    return [
                        f"[settle|have done with|get to the bottom of] the [business|matter|question] of {noun}",
                        f"[find out|learn] [what|how much] {self.other} knew about {noun}",
                        f"[put|set] {noun} [behind {{so}}|to rest] [for good|once and for all|at last]",
                    ]
                return [
                    f"[make sense of|understand|get to the bottom of] [what had|what had really] happened when {settled.past()}",
                    f"[find out|learn] why {settled.past()}",
                    f"[settle|have done with] the [business|question|matter] of how {settled.past()}",
                ]
        if infinitive:
            for name in sorted(names, key=len, reverse=True):
                infinitive = infinitive.replace(name, name.split()[0])
            return [infinitive]
        noun = beat.noun()
        if noun:
            return [f"settle the matter of {noun}"]
        return ["set things right"]

    # ---- grammar ------------------------------------------------------------------------
    def choose(self, key: str, options: tuple[str, ...]) -> str:
        """Pick an option, avoiding the ones used most recently under the same key."""
        recent = self.recent.setdefault(key, [])
        keep = min(len(options) // 2, 12)
        index = self.rng.randrange(len(options))
        for _ in range(4):
            if index not in recent:
                break
            index = self.rng.randrange(len(options))
        if keep:
            recent.append(index)
            del recent[:-keep]
        return options[index]

    def _slot(self, match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "xn":
            self.x_named = True
        if key == "X":
            return self.values["xo"] if self.x_named else self.values["xn"]
        if key in self.values:
            return self.values[key]
        if key == "S":
            # a pronoun only when the same person was the subject just before, so it is clear
            name = self.values["sn"]
            same = self.last_subject == name and self.values["sp"] != "they"
            return self.values["sp"] if same and self.rng.random() < 0.7 else name
        if key == "motif":
            return self.choose("motif", tuple(self.motifs))
        if key == "part":
            return self.rng.choice(_PARTS)
        if key == "place":
            return self.place
        if key == "goal":
            return self.rng.choice(self.goals)
        if key == "beat_past":
            return self.beat.past()
        if key == "beat_perf":
            return self.beat.perfect()
        if key == "conflict":
            return self.conflict.past() if self.conflict.is_clause else self.conflict.noun()
        if key == "outcome":
            return self.outcome.noun() or self.outcome.past()
        if key == "outcome_cap":
            return _upper_first(self.outcome.noun() or self.outcome.past())
        if key in _POOLS:
            return self.choose(key, _POOLS[key])
        if key in _GRAMMAR:
            return self.choose(key, _GRAMMAR[key])
        raise KeyError(f"unknown slot {key!r}")

    def expand(self, template: str) -> str:
        text = template
        for _ in range(12):
            if "[" in text:
                text = _CHOICE.sub(lambda m: self.rng.choice(m.group(1).split("|")), text)
                continue
            if "{" in text:
                text = _SLOT.sub(self._slot, text)
                continue
            break
        return text

    def person(self, pov_subject: bool) -> None:
        """Make the POV (or the other person) the subject of the next sentence."""
        subject, other = (self.pov, self.other) if pov_subject else (self.other, self.pov)
        sp, so, sd, sr = _pronouns(subject)
        _, xo, xd, _ = _pronouns(other)
        self.values = {
            "sn": subject,
            "sp": sp,
            "sp_cap": _upper_first(sp),
            "so": so,
            "sd": sd,
            "sr": sr,
            "xn": other,
            "xo": xo,
            "xd": xd,
        }

    def sentence(self, template: str, pov_subject: bool = True) -> str:
        self.person(pov_subject)
        self.x_named = False
        text = self.expand(template)
        self.last_subject = self.values["sn"]
        text = re.sub(r"\s+", " ", text).strip()
        text = re.sub(r"\s+([,.;:?!])", r"\1", text)
        return _upper_first(text)

    # ---- sentence kinds -----------------------------------------------------------------
    def action(self, pov_subject: bool, lead: bool = True) -> str:
        template = (
            "{lead}{S} {vp}{tail}." if lead and self.rng.random() < 0.2 else "{S} {vp}{tail}."
        )
        return self.sentence(template, pov_subject)

    def desc(self) -> str:
        text = self.sentence("{desc}")
        self.last_subject = ""
        return text

    def inner(self) -> str:
        return self.sentence("{inner}")

    def line(self, speaker: str) -> tuple[str, str]:
        """A line of dialogue in ``speaker``'s voice, and its end mark (``.`` or ``?``)."""
        voice = self.voices.get(speaker, "")
        kind = next(
            (
                k
                for k, words in (
                    ("blunt", "blunt"),
                    ("funny", "funny"),
                    ("lyrical", "lyrical"),
                    ("warm", "question"),
                    ("clipped", "clipped"),
                    ("formal", "formal"),
                )
                if words in voice or k in voice
            ),
            "",
        )
        roll = self.rng.random()
        question_share = 0.5 if kind == "warm" else 0.25
        if kind and roll < 0.2:
            core, mark = self.choose("extra-" + kind, _VOICE_EXTRA[kind]), "."
            if kind == "warm" and core.startswith(("Are", "Have", "Is", "Do", "What")):
                mark = "?"
        elif roll < 0.2 + question_share:
            core, mark = self.choose("questions", _QUESTIONS), "?"
        else:
            core, mark = self.choose("lines", _LINES), "."
        roll = self.rng.random()
        prefix = self.rng.choice(_PREFIX) if kind != "clipped" and roll < 0.25 else ""
        suffix = (
            self.rng.choice(_SUFFIX) if kind != "clipped" and mark == "." and roll > 0.85 else ""
        )
        core = self.expand(core)
        if prefix.endswith(", ") and not core.startswith(("I ", "I'", "I’")):
            core = _lower_first(core)
        text = self.expand(prefix) + core + self.expand(suffix)
        if kind == "blunt" and mark == "." and self.rng.random() < 0.2:
            text = text + ". " + self.choose("extra-blunt", _VOICE_EXTRA["blunt"])
        if kind == "formal":
            for short, long in _CONTRACTIONS:
                text = re.sub(rf"\b{re.escape(short)}\b", long, text)
        text = re.sub(r"\s+", " ", text).strip()
        return _upper_first(re.sub(r"\s+([,.;:?!])", r"\1", text)), mark

    def speech(self, speaker_is_pov: bool, form: int, turn: int) -> str:
        self.person(speaker_is_pov)
        speaker = self.values["sn"]
        voice = self.voices.get(speaker, "")
        kind = next(
            (k for k in _TAG_MANNER if k in voice or (k == "warm" and "question" in voice)), ""
        )
        line, mark = self.line(speaker)
        self.person(speaker_is_pov)  # line() may have used slots; restore the speaker's values
        replies = ("said", "said", "said", "replied", "answered") if turn else ("said",)
        verb = "asked" if mark == "?" else self.rng.choice(replies)
        voiced = kind and self.rng.random() < 0.4
        manner = self.expand(self.rng.choice(_TAG_MANNER[kind]) if voiced else "{manner}")
        pronoun = self.values["sp"] if self.last_subject == speaker else "they"
        self.last_subject = speaker
        if form == 0:
            end = "," if mark == "." else mark
            return f"“{line}{end}” {speaker} {verb}{manner}."
        if form == 1:
            end = "," if mark == "." else mark
            who = speaker if pronoun == "they" or self.rng.random() < 0.5 else pronoun
            if who == speaker and self.rng.random() < 0.5:
                return f"“{line}{end}” {verb} {speaker}{manner}."
            return f"“{line}{end}” {who} {verb}{manner}."
        if form == 2:
            gesture = self.expand("{gesture}")
            return f"{speaker} {gesture}. “{line}{mark}”"
        return f"“{line}{mark}”"

    # ---- paragraphs ---------------------------------------------------------------------
    def accept(self, paragraph: str) -> bool:
        """True (and remembered) if no sentence of it repeats one already in the chapter."""
        keys = []
        for sentence in re.split(r"(?<=[.!?”])\s+", paragraph):
            key = re.sub(r"\W+", " ", sentence.lower()).strip()
            if len(key.split()) >= 6:
                if key in self.seen_keys or key in keys:
                    return False
                keys.append(key)
        raws = []
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            if len(sentence) >= 25:
                if sentence.lower() in self.seen_raw or sentence.lower() in raws:
                    return False
                raws.append(sentence.lower())
        self.seen_keys.update(keys)
        self.seen_raw.update(raws)
        return True

    def paragraph(self, build: Any) -> str:
        for _ in range(8):
            self.last_subject = ""
            text: str = build()
            if self.accept(text):
                return text
        return ""

    def exchange(self) -> list[str]:
        """Two to four turns of dialogue, each its own paragraph, speakers alternating."""
        turns = self.rng.randint(2, 4)
        pov_speaks = self.rng.random() < 0.5
        out = []
        for turn in range(turns):

            def build(pov_speaks: bool = pov_speaks, turn: int = turn) -> str:
                form = self.rng.choice((0, 1, 2)) if turn < 2 else self.rng.choice((0, 1, 2, 3))
                self.last_subject = ""
                if self.rng.random() < 0.15:
                    parts = [self.action(pov_speaks, lead=False), self.speech(pov_speaks, 0, turn)]
                else:
                    parts = [self.speech(pov_speaks, form, turn)]
                    if self.rng.random() < 0.35:
                        parts.append(self.action(pov_speaks, lead=False))
                return " ".join(parts)

            paragraph = self.paragraph(build)
            if paragraph:
                out.append(paragraph)
            pov_speaks = not pov_speaks
        return out

    def narrative(self) -> str:
        def build() -> str:
            self.last_subject = ""
            roll = self.rng.random()
            if roll < 0.3:
                sentences = [self.desc(), self.action(self.rng.random() < 0.6)]
            elif roll < 0.6:
                sentences = [
                    self.action(self.rng.random() < 0.55) for _ in range(self.rng.randint(2, 3))
                ]
            else:
                sentences = [self.inner(), self.action(self.rng.random() < 0.5)]
                if self.rng.random() < 0.4:
                    sentences.append(self.inner())
            return " ".join(sentences)

        return self.paragraph(build)

    def scene(self, scene: dict[str, Any], budget: int, first: bool) -> list[str]:
        self.set_scene(scene)
        paragraphs: list[str] = []
        after = self.expand("{after}") if first and self.ctx.get("previous_ending") else ""
        paragraphs.append(self.paragraph(lambda: after + self.sentence("{open}")) or self.desc())
        if budget > 200:
            paragraphs.append(self.narrative())
        closing = self.paragraph(lambda: self.sentence("{close}"))
        words = sum(_count(p) for p in paragraphs) + _count(closing)
        turned = False
        while words < budget - 25:
            if self.rng.random() < 0.4:
                new = self.exchange()
            else:
                new = [self.narrative()]
            if not turned and words > budget * 0.5:
                turn = self.paragraph(lambda: self.sentence("{turn}"))
                if turn:
                    new.append(turn)
                turned = True
            new = [p for p in new if p]
            paragraphs.extend(new)
            words += sum(_count(p) for p in new)
        if not turned:
            paragraphs.append(self.paragraph(lambda: self.sentence("{turn}")))
        paragraphs.append(closing)
        return [p for p in paragraphs if p]


def write_chapter(ctx: dict[str, Any], rng: random.Random, *, target: int) -> str:
    """A chapter of roughly ``target`` words, scene by scene, separated by scene breaks."""
    scenes: list[dict[str, Any]] = list(ctx.get("scenes") or []) or [
        {"cast": [c["name"] for c in ctx.get("cast") or [] if isinstance(c, dict)]}
    ]
    writer = _Writer(ctx, rng)
    target = max(20, int(target))
    budget = max(40, target // max(1, len(scenes)))
    parts = [writer.scene(scene, budget, first=i == 0) for i, scene in enumerate(scenes)]
    _fit(parts, target, writer, scenes)
    return f"\n\n{SCENE_BREAK}\n\n".join("\n\n".join(part) for part in parts)


def _fit(
    parts: list[list[str]], target: int, writer: _Writer, scenes: list[dict[str, Any]]
) -> None:
    """Bring the chapter within 3% of ``target``: add middle paragraphs, or drop sentences."""

    def total() -> int:
        return sum(_count(p) for part in parts for p in part)

    for _ in range(200):
        if total() >= target * 0.97:
            break
        index = min(range(len(parts)), key=lambda i: sum(_count(p) for p in parts[i]))
        writer.set_scene(scenes[index])
        extra = writer.narrative()
        if extra:
            parts[index].insert(max(1, len(parts[index]) - 1), extra)
    for _ in range(400):
        if total() <= target * 1.03:
            break
        middles = [(i, j) for i, part in enumerate(parts) for j in range(1, len(part) - 1)] or [
            (i, j) for i, part in enumerate(parts) for j in range(len(part))
        ]
        i, j = max(middles, key=lambda ij: _count(parts[ij[0]][ij[1]]))
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z“])", parts[i][j])
        if len(sentences) > 1:
            parts[i][j] = " ".join(sentences[:-1])
        elif len(parts[i]) > 2:
            del parts[i][j]
        else:
            break
