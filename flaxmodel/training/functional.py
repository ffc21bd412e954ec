"""Our own functional test suite: short English sentences, one behaviour ("functionality") each.

Content warning: the hateful cases are hateful on purpose, slurs included;
a moderation model must be tested on what it is meant to catch.

A data set tells how often a model agrees with annotators; a functional suite
tells *what* it gets wrong: dehumanising language, threats, hate asked as a
question, hate that names its target once and attacks it through a pronoun,
negated or quoted hate, counter-speech, profanity that targets no group, abuse
of one person, neutral mentions of a group.  Every case is a
template filled with a target: protected groups for the hateful cases and
their contrasts, non-protected groups for abuse that is not hate, or a group named
only by a category ("people from that religion").  All
templates here were written for this project; none comes from, or is built
from, any published suite (HateCheck stays a held-back judge that we never
train or select on).

Templates are split in two by position: even ones make the ``train`` part
(a source of the training mixture), odd ones the ``val`` part (model
selection and the evaluation job's per-functionality table), so selection
never sees a sentence pattern the model trained on.

Each case carries ``label``: the set of our classes (``hate``, ``offensive``,
``neither``) it allows, written ``a|b``; hateful cases allow only ``hate``.
"""

from __future__ import annotations

import dataclasses

# Protected characteristics: race, ethnicity, national origin, religion, gender,
# gender identity, sexual orientation, disability.
PROTECTED = (
    "women", "Black people", "Muslims", "Jews", "gay people", "trans people", "immigrants",
    "disabled people", "refugees", "Mexicans", "Asians", "lesbians", "Hindus", "Roma",
)
# Groups defined by a choice or a job: insulting them is abuse, not hate.
NOT_PROTECTED = (
    "politicians", "lawyers", "bankers", "landlords", "journalists", "vegans", "gamers", "cyclists",
)
# A group referred to only by a category or a demonstrative ("that religion"): the sentence names no group
# the model could key on, so the attack itself has to carry the label.
UNNAMED = (
    "people from that religion", "people of that race", "people from that country", "those people",
    "people of that faith", "people from that culture",
)
# Placeholder -> the targets it is filled with; a functionality's first template decides.
FILLERS = {"{g}": PROTECTED, "{n}": NOT_PROTECTED, "{v}": UNNAMED}
HATE = "hate"
NOT_HATE = "offensive|neither"

# functionality -> (allowed classes, templates).  {g}: a target group.
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "derogation": (HATE, (
        "{g} are disgusting.",
        "I can't stand {g}, they ruin everything they touch.",
        "{g} are too stupid to think for themselves.",
        "Honestly {g} make me sick.",
        "{g} are lazy and dishonest, all of them.",
        "Nothing good has ever come from {g}.",
        "{g} are a disease on this country.",
        "The world would be better off without {g}.",
        "{g} are pathetic and worthless.",
        "Every single one of those {g} is a liar.",
        "{g} are born criminals.",
        "You can never trust {g}.",
        "{g} will never be anything but trouble.",
        "I don't think {g} are capable of honesty.",
        "{g} are never going to be real citizens.",
        "Not one of those {g} is worth saving.",
        "I fucking hate {g}.",
        "{g} are fucking disgusting.",
        "{g} can't be trusted with anything.",
        "{g} are not capable of being decent.",
        "Shit like this is why I hate {g}.",
        "{g} have never contributed anything worth a damn.",
        "No one with any sense would ever respect {g}.",
        "{g} will never be as good as the rest of us.",
    )),
    "dehumanisation": (HATE, (
        "{g} are animals.",
        "{g} are vermin and should be treated like it.",
        "{g} are nothing but parasites.",
        "To me {g} are subhuman.",
        "{g} are rats spreading filth everywhere.",
        "{g} are not really human.",
        "{g} breed like cockroaches.",
        "Those {g} are a plague of insects.",
        "{g} aren't even people, they are livestock.",
        "{g} will never be human in my eyes.",
        "{g} are no better than rats.",
        "There is nothing human about {g}.",
        "{g} are less than animals.",
        "I don't see {g} as human beings.",
        # Negating humanity is hateful, negating an insult is not ("... in no way subhuman", under
        # negated_hate): the label has to come from what is negated.
        "I don't consider {g} human.",
        "{g} are not people, they are pests.",
        "Nothing about {g} is human.",
        "{g} don't deserve to be called human.",
        "{g} have no humanity in them at all.",
        "I refuse to treat {g} as people.",
    )),
    "threat": (HATE, (
        "{g} should all be wiped out.",
        "I want to hurt every one of those {g} I see.",
        "We need to get rid of {g} for good, by force if we must.",
        "Someone should burn down the houses of {g}.",
        "{g} deserve to be beaten in the street.",
        "I hope all {g} die a slow death.",
        "Line up the {g} and shoot them.",
        "It is time to start attacking {g}.",
    )),
    "exclusion": (HATE, (
        "{g} should not be allowed to vote.",
        "Keep {g} out of our neighbourhood.",
        "{g} have no place in this country and should be sent away.",
        "No {g} should ever be allowed to work with children.",
        "{g} should be banned from public life.",
        "Our schools must refuse to admit {g}.",
        "{g} shouldn't be allowed to speak in public.",
        "Deport all the {g}, every last one.",
        "{g} don't belong anywhere near our kids.",
        "{g} don't deserve to live here.",
    )),
    "hate_question": (HATE, (
        "Why are {g} so stupid?",
        "Isn't it obvious that {g} are inferior?",
        "Why do {g} always have to be so disgusting?",
        "Can anyone explain why {g} are such animals?",
        "Why should we put up with filthy {g} any longer?",
        "How can anyone defend {g} when they are all criminals?",
        "Why do we even let {g} into this country?",
        "Am I the only one who thinks {g} are a plague?",
        "What is it with {g} and crime?",
        "Why can't {g} just go back where they came from?",
        "Who else is sick of {g} ruining everything?",
        "Do {g} even have brains?",
        "When will we finally get rid of {g}?",
        "Is there anything more useless than {g}?",
    )),
    "hate_opinion": (HATE, (
        "I think {g} are worthless.",
        "In my opinion {g} are a threat to decent people.",
        "I honestly believe {g} are less intelligent than the rest of us.",
        "If you ask me, {g} are a cancer on society.",
        "I feel that {g} are dirty and dangerous.",
        "My view is that {g} should have fewer rights.",
        # Hedged: a disclaimer or a softener before the attack does not make it less hateful.
        "I'm not a bigot, but {g} are ruining this country.",
        "No offence, but {g} are disgusting.",
        "Personally, I find {g} repulsive.",
        "Call me old-fashioned, but {g} shouldn't be raising children.",
        "I'm just saying what everyone thinks: {g} are parasites.",
        "Frankly, I believe {g} are a burden on everyone else.",
        "To be honest, I think {g} should be kept out of this country.",
        "Maybe it's just me, but {g} ruin every place they move to.",
        "It's my opinion that {g} don't deserve equal rights.",
        "I'm entitled to my view, and my view is that {g} are subhuman.",
    )),
    # The group is named once and attacked through a pronoun in a later clause or sentence.
    "pronoun_reference": (HATE, (
        "I've met plenty of {g}, and I despise every one of them.",
        "{g} keep moving into my area. I can't stand them.",
        "Don't talk to me about {g}. They are all scum.",
        "I used to work with {g}, and they were all vermin.",
        "{g} think they deserve respect. They deserve nothing.",
        "Whenever I see {g}, I'm reminded how much I hate them.",
        "{g} again? Someone should get rid of them.",
        "My town is full of {g} now, and they make me sick.",
    )),
    "unnamed_group": (HATE, (
        "{v} are dangerous and should be driven out.",
        "{v} should never be allowed to vote.",
        "{v} are filthy animals.",
        "I would ban {v} from this country tomorrow.",
        "{v} are all thieves and liars.",
        "Keep {v} away from our children.",
        "{v} are a cancer wherever they go.",
        "{v} deserve to suffer, all of them.",
        "{v} are not welcome here and never will be.",
        "The world would be better without {v}.",
    )),
    "unnamed_group_neutral": ("neither", (
        "{v} are welcome here.",
        "I've worked with {v} for years, and they are great.",
        "{v} have the same rights as anyone else.",
        "We invited {v} to the festival.",
        "{v} are no more dangerous than anyone else.",
        "A few of my neighbours are {v}.",
        "I learned a lot from {v} at the workshop.",
        "{v} deserve to be treated fairly.",
    )),
    "slur": (HATE, (
        "Get out of here, you filthy faggot.",
        "Those dykes are disgusting.",
        "No kike will ever be welcome here.",
        "Go back to your country, you spic.",
        "Trannies are mentally ill freaks.",
        "Another retard who can't read.",
        "Keep the towelheads out.",
        "I hate those chinks.",
        "The neighbourhood is full of niggers now.",
        "Wetbacks are stealing our jobs.",
    )),
    "spelling": (HATE, (
        "{g} are d1sgusting.",
        "{g} are disgustin and worthles.",
        "{g} are v e r m i n.",
        "{g} are s u b h u m a n.",
        "{g} shud all be wiped out.",
        "{g} r animals.",
        "I h8 {g}.",
        "{g} are vermín.",
        "{g} are p4rasites.",
        "{g} should b3 k1lled.",
    )),
    "negated_hate": (NOT_HATE, (
        "I would never say that {g} are worthless.",
        "{g} are not animals, they are people like the rest of us.",
        "It is simply wrong to think {g} are dangerous.",
        "No, {g} are not criminals.",
        "I don't believe {g} should be kept out of anywhere.",
        "Nobody should ever call {g} vermin.",
        "{g} are not a threat to anyone.",
        "There is nothing disgusting about {g}.",
        "{g} are not vermin, and nobody should talk about them that way.",
        "I refuse to believe that {g} are any less human than me.",
        "It's not true that {g} are lazy.",
        "{g} don't deserve to be hated.",
        "I have never thought {g} were dangerous.",
        "{g} are not the problem in this country.",
        "Nobody here is saying {g} should be deported.",
        "I don't hate {g} at all.",
        "{g} aren't stupid, whatever some people claim.",
        "It would be wrong to ban {g} from anything.",
        "{g} are not dirty and never were.",
        "We should not treat {g} like criminals.",
        "No one should say {g} aren't human.",
        "{g} are not subhuman, and saying so is wrong.",
        "I don't think {g} should be kicked out.",
        "Nobody I know thinks {g} are rats.",
        "{g} are not dangerous, and they never have been.",
        "It's false that {g} are criminals.",
        "{g} are not parasites; they work as hard as anyone.",
        "I don't agree that {g} are inferior.",
        "There's no reason to fear {g}.",
        "{g} aren't animals and never will be.",
        "It is not okay to say {g} should be banned.",
        "I'd never claim {g} are a disease.",
        "{g} are not less intelligent than anyone else.",
        "Nobody should be afraid of {g}.",
        # Minimal pairs: the words of a hateful template, negated, so that the label
        # has to come from the negation and not from "animals" or "criminals".
        "Of course {g} aren't rats.",
        "{g} are human beings, not animals.",
        "I've never thought of {g} as criminals.",
        "Not a single one of the {g} I know is a criminal.",
        "{g} aren't a disease, they're our neighbours.",
        "{g} are in no way subhuman.",
        "Nothing about {g} makes them less human.",
        "{g} don't deserve any of the hate they get.",
        "I don't think {g} should be hated for who they are.",
        "I have nothing against {g}.",
        "{g} aren't thieves, no matter what the news says.",
        "I'm not scared of {g} at all.",
    )),
    "counter_speech": (NOT_HATE, (
        "Saying {g} are vermin is disgusting, and you should be ashamed.",
        "Stop spreading the lie that {g} are criminals.",
        "If you think {g} are inferior, you need to educate yourself.",
        "Calling {g} animals is hateful and has no place here.",
        "Enough with the hate against {g}; they deserve respect.",
        "People who want {g} banned from public life are the real problem.",
        "Hating {g} says more about you than about them.",
        "Comments calling {g} parasites need to be taken down.",
        "I'm sick of people saying {g} should die. It's disgusting.",
        "Wanting {g} deported is bigotry, plain and simple.",
        "You don't get to call {g} subhuman and pretend it's free speech.",
        "Anyone who says {g} are a disease should be banned from this forum.",
        "Treating {g} like animals is exactly how atrocities start.",
        "It's shameful that people still spread hate about {g}.",
        "Don't let anyone tell you that {g} are less than human.",
        "The attacks on {g} this week were cowardly and vile.",
        "Threatening {g} is a crime, and I hope those responsible are caught.",
        "Blaming {g} for everything is lazy and cruel.",
        "Your post about {g} is bigoted garbage.",
        "I stand with {g} against the people who want them gone.",
        "Demanding that {g} be banned is pure prejudice.",
        "Anyone who wants {g} kicked out is a bigot.",
        "If you want {g} deported, you are the problem.",
        "Calling for violence against {g} is never okay.",
        "People who say {g} are criminals are spreading hate.",
        "I will not stay quiet while people call {g} vermin.",
        "Pushing to keep {g} out of schools is discrimination, full stop.",
        "The idea that {g} are less human is vile nonsense.",
        "Kicking {g} out would be a disgrace.",
        "Those who call {g} criminals are liars.",
        "Spreading rumours that {g} are criminals is how hate begins.",
        "Deporting {g} would be cruel and wrong.",
        "Whoever wants {g} thrown out should be ashamed.",
        "People pushing to expel {g} are bigots.",
    )),
    "quoted_hate": (NOT_HATE, (
        "He told me '{g} are disgusting' and I reported him.",
        "The article quotes a man who said {g} should be deported.",
        "'{g} are animals' was written on the wall, and the police are investigating.",
        "My neighbour keeps saying {g} are parasites, which is why we no longer talk.",
        "The post claiming {g} are criminals was removed for hate speech.",
        "She was fired after tweeting that {g} should be wiped out.",
        "The sign said '{g} go home', and it made me furious.",
        "In the video he shouts that {g} are vermin; the club has banned him.",
        "Someone in the comments wrote that {g} should be shot. Reported.",
        "My grandfather used to say {g} were lazy, and I've spent years unlearning it.",
        "The graffiti read '{g} out', and volunteers painted over it the next day.",
        "The study collected posts saying {g} are a plague, to measure online hate.",
        "The leaflet claimed {g} are a threat to our children; the council condemned it.",
        "'Kill all {g}' was shouted at the rally, according to witnesses.",
        "A teacher was suspended for telling students {g} are inferior.",
        "When they chanted that {g} were animals, the crowd fell silent.",
    )),
    "identity_neutral": ("neither", (
        "I live with two {g}.",
        "There are many {g} in my city.",
        "The report looks at how {g} use public transport.",
        "Several {g} were at the meeting yesterday.",
        "My teacher wrote a book about the history of {g}.",
        "The survey asked {g} about their jobs.",
        "We talked about {g} in class today.",
        "A group of {g} opened a bakery on my street.",
        "{g} make up a large share of the nurses here.",
        "The museum has a new exhibit about {g}.",
        "Are there any support groups for {g} in this town?",
        "{g} can apply for the grant from Monday.",
        "The documentary follows three {g} through one year.",
        "I'm writing my thesis on {g} in politics.",
    )),
    "identity_positive": ("neither", (
        "{g} are wonderful people.",
        "I love spending time with {g}.",
        "{g} have made this country so much better.",
        "So proud of the {g} in our community.",
        "{g} deserve the same respect as everyone else.",
        "Some of the kindest people I know are {g}.",
        "{g} are an important part of our community.",
        "We are lucky to have {g} as neighbours.",
        "I admire the courage of {g}.",
        "Thank you to all the {g} who volunteered this weekend.",
        "{g} belong here as much as anyone.",
        "Happy to see more {g} in leadership roles.",
        "I've met plenty of {g}, and I like every one of them.",
        "{g} moved in next door, and they are lovely.",
        "Whenever I see {g} at the market, they greet me warmly.",
        "My town has many {g} now, and they make it better.",
        # Opinions that praise or defend: "I think" and "my view" alone do not make a sentence hateful.
        "In my opinion {g} deserve far more credit.",
        "If you ask me, {g} are the backbone of this city.",
        "I honestly believe {g} make our schools better.",
        "My view is that {g} should have the same rights as everyone.",
    )),
    "abuse_not_protected": ("offensive", (
        "{n} are disgusting.",
        "{n} are parasites, every one of them.",
        "I can't stand {n}, they ruin everything.",
        "{n} are too stupid to think for themselves.",
        "{n} are vermin.",
        "All {n} are liars.",
        "{n} are scum.",
        "I hate {n}, every last one of them.",
        "{n} are worthless leeches.",
        "Honestly, {n} make me sick.",
        "{n} should all be locked up.",
        "Nothing good ever came from {n}.",
        "{n} are brainless sheep.",
        "Never trust {n}, they are all crooks.",
        "I fucking hate {n}.",
        "{n} are fucking disgusting.",
    )),
}

# Cases with no target: abuse of one person or of a thing, and profanity aimed at nobody.
UNTARGETED: dict[str, tuple[str, tuple[str, ...]]] = {
    "abuse_individual": ("offensive", (
        "You are a stupid idiot.",
        "Get lost, freak.",
        "Stop whining like a baby, you idiot.",
        "Shut up, you worthless moron.",
        "You're the dumbest person I have ever met.",
        "Nobody likes you, loser.",
        "You are a pathetic excuse for a human being.",
        "Go away, you ugly clown.",
        "What a brainless jerk you are.",
        "You are a disgusting slob.",
    )),
    "abuse_object": ("offensive|neither", (
        "This phone is a useless piece of garbage.",
        "This stupid printer never works.",
        "The new update is trash.",
        "This damn car broke down again.",
        "That movie was a pile of crap.",
        "My laptop is a worthless brick.",
    )),
    "profanity": ("offensive|neither", (
        "Fuck, I missed the bus again.",
        "This weather is shit.",
        "Holy shit, that concert was amazing!",
        "Damn, I forgot my keys.",
        "What the fuck is going on with the trains today?",
        "I'm so fucking tired.",
        "Shit happens, let's move on.",
        "That goal was fucking brilliant.",
        "Hell yeah, we won!",
        "Crap, the coffee is cold.",
        "This fucking traffic is killing me.",
        "Shit, I left my phone at home.",
        "Damn, that was a great game.",
        "Fuck yes, I got the job!",
    )),
    "neutral": ("neither", (
        "I'm going to the gym after work.",
        "The meeting was moved to Thursday.",
        "Can someone recommend a good book?",
        "Happy birthday to my best friend!",
        "The soup needs more salt.",
        "We finally finished painting the kitchen.",
        "Traffic was light this morning.",
        "Looking forward to the weekend.",
    )),
}
SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class Case:
    """One functional test case.

    Attributes:
      text: the sentence.
      label: the classes it allows, ``|``-separated (``hate``, ``offensive|neither``, ...).
      functionality: what it tests (a key of :data:`TEMPLATES` or :data:`UNTARGETED`).
      target: the group it names, "" for untargeted cases.
    """

    text: str
    label: str
    functionality: str
    target: str


def _sentence(template: str, group: str) -> str:
    text = template.format(g=group, n=group, v=group)
    return text[0].upper() + text[1:]


def cases(split: str) -> list[Case]:
    """Every case of one part of the suite, in a fixed order.

    Args:
      split: ``"train"`` (even-numbered templates) or ``"val"`` (odd-numbered ones).

    Returns:
      The cases; the same list on every call.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    parity = SPLITS.index(split)
    out: list[Case] = []
    for functionality, (label, templates) in TEMPLATES.items():
        groups = next((g for p, g in FILLERS.items() if p in templates[0]), ())
        for template in templates[parity::2]:
            if any(p in template for p in FILLERS):
                out.extend(Case(_sentence(template, g), label, functionality, g) for g in groups)
            else:
                out.append(Case(template, label, functionality, ""))
    for functionality, (label, templates) in UNTARGETED.items():
        out.extend(Case(t, label, functionality, "") for t in templates[parity::2])
    return out

