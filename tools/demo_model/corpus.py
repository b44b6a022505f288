"""The demo model's corpus: the facts of world.py woven into short English and French documents
(fact sentences with varied phrasings, quizzes, country profiles, little stories, counting and
sums), plus the evaluation prompts: every fact asked with a training phrasing ("key" prompts) and
with phrasings that never occur in training ("held-out" prompts: unseen lead-ins and frames around
the fact).

Only random.Random(seed) is used, so a seed always gives the same documents.
"""
import random

from world import (ANIMALS, COLOURS, COUNTRIES, FRENCH_WORDS, NAMES, NOMBRES, NOMS,
                   NUMBER_WORDS, OPPOSITES, PLURALS, THINGS)

# ---- relations ---------------------------------------------------------------------------------
# A relation is a list of facts; each fact is a dict of slots plus "ans". Its templates are
# prompts (the answer follows after a space); the first template is the "key" phrasing.

LOWERABLE = {"The", "People", "In", "What", "A", "One", "After", "How", "La", "Le", "L'", "En",
             "Au", "Aux", "À", "Que", "De", "Quelle", "Il"}


def lower_first(s):
    w = s.split(" ", 1)[0]
    if w in LOWERABLE or w.startswith("L'"):
        return s[0].lower() + s[1:]
    return s


def cap_first(s):
    return s[0].upper() + s[1:]


def facts():
    R = {}
    R["capital"] = [dict(C=c[0], ans=c[1]) for c in COUNTRIES]
    R["capital_of"] = [dict(Y=c[1], ans=c[0]) for c in COUNTRIES]
    R["language"] = [dict(C=c[0], Y=c[1], ans=c[2]) for c in COUNTRIES]
    R["sound"] = [dict(a=a[0], As=cap_first(a[1]), ans=a[2]) for a in ANIMALS]
    R["colour"] = [dict(o=o[0], ans=o[2]) for o in COLOURS]
    R["opposite"] = ([dict(a=a, ans=b) for a, b in OPPOSITES] +
                     [dict(a=b, ans=a) for a, b in OPPOSITES])
    R["plural"] = [dict(s=s, ans=p) for s, p in PLURALS]
    R["sum"] = [dict(a=str(a), b=str(b), wa=NUMBER_WORDS[a], wb=NUMBER_WORDS[b], ans=str(a + b))
                for a in range(1, 10) for b in range(1, 10)]
    R["sum_words"] = [dict(wa=cap_first(NUMBER_WORDS[a]), wb=NUMBER_WORDS[b],
                           ans=NUMBER_WORDS[a + b]) for a in range(1, 10) for b in range(1, 10)
                      if a + b <= 20]
    R["next"] = [dict(n=str(n), ans=str(n + 1)) for n in range(1, 30)]
    R["next_word"] = [dict(w=NUMBER_WORDS[n], ans=NUMBER_WORDS[n + 1]) for n in range(0, 20)]
    R["count"] = [dict(s1=NUMBER_WORDS[n], s2=NUMBER_WORDS[n + 1], s3=NUMBER_WORDS[n + 2],
                       ans=NUMBER_WORDS[n + 3]) for n in range(1, 18)]
    R["count_digits"] = [dict(s1=str(n), s2=str(n + 1), s3=str(n + 2), ans=str(n + 3))
                         for n in range(1, 27)]
    R["to_french"] = [dict(e=e, ans=f) for e, f in FRENCH_WORDS]
    R["to_english"] = [dict(f=f, ans=e) for e, f in FRENCH_WORDS]
    # French
    R["fr_capital"] = [dict(de=c[4], ans=c[6]) for c in COUNTRIES]
    R["fr_language"] = [dict(en=cap_first(c[5]), de=c[4], ans=c[7]) for c in COUNTRIES]
    R["fr_sound"] = [dict(le=cap_first(a[4]), le_l=a[4], ans=a[5]) for a in ANIMALS if a[4]]
    R["fr_colour"] = [dict(le=cap_first(o[3]), le_l=o[3], ans=o[4]) for o in COLOURS]
    R["fr_sum"] = [dict(a=str(a), b=str(b), ans=str(a + b))
                   for a in range(1, 10) for b in range(1, 10)]
    R["fr_word"] = [dict(e=e, ans=f) for e, f in FRENCH_WORDS]
    return R


# Training phrasings. The first of each list is the key phrasing used by the "key" evaluation.
TRAIN = {
    "capital": ["The capital of {C} is", "{C}'s capital is", "The capital city of {C} is",
                "{C} is a country. Its capital is", "What is the capital of {C}? It is",
                "What is the capital of {C}? The capital of {C} is",
                "The capital of the country {C} is"],
    "capital_of": ["{Y} is the capital of", "{Y} is the capital city of", "{Y} is a city in",
                   "The city of {Y} is in"],
    "language": ["People in {C} speak", "In {C}, people speak", "The language of {C} is",
                 "The main language of {C} is", "What language do people speak in {C}? They speak",
                 "{C} is a country where people speak", "People in {Y} speak"],
    "sound": ["The {a} says", "A {a} says", "What does the {a} say? The {a} says",
              "What does a {a} say? It says", "The {a} goes", "{As} say"],
    "colour": ["The {o} is", "The colour of the {o} is", "What colour is the {o}? The {o} is",
               "What colour is the {o}? It is"],
    "opposite": ["The opposite of {a} is", "What is the opposite of {a}? It is",
                 "What is the opposite of {a}? The opposite of {a} is",
                 "The opposite of the word {a} is", "The word {a} is the opposite of"],
    "plural": ["The plural of {s} is", "One {s}, two", "I have one {s}, and you have two",
               "What is the plural of {s}? It is", "The plural of the word {s} is"],
    "sum": ["{a} plus {b} is", "{a} + {b} =", "What is {a} plus {b}? It is", "{a} and {b} make",
            "{a} plus {b} equals", "If you add {a} and {b}, you get"],
    "sum_words": ["{wa} plus {wb} is", "{wa} and {wb} make"],
    "next": ["After {n} comes", "The number after {n} is", "The next number after {n} is"],
    "next_word": ["After {w} comes", "The number after {w} is"],
    "count": ["{s1}, {s2}, {s3},"],
    "count_digits": ["{s1}, {s2}, {s3},"],
    "to_french": ["The French word for {e} is", "In French, {e} is",
                  "How do you say {e} in French? You say", "The word {e} in French is"],
    "to_english": ["The English word for {f} is", "The French word {f} means"],
    "fr_capital": ["La capitale {de} est", "Quelle est la capitale {de} ? C'est",
                   "La capitale {de}, c'est"],
    "fr_language": ["{en}, on parle", "La langue {de} est le", "{en}, les gens parlent"],
    "fr_sound": ["{le} fait", "Que fait {le_l} ? {le} fait", "Le cri {de_l} est"],
    "fr_colour": ["{le} est", "De quelle couleur est {le_l} ? {le} est"],
    "fr_sum": ["{a} plus {b} font", "{a} plus {b} égale", "Combien font {a} plus {b} ? Cela fait"],
    "fr_word": ["En français, {e} se dit", "Le mot anglais {e} se dit"],
}
# Attach "de_l" (de + article) for the French animal/colour templates.
_DE = {"le ": "du ", "la ": "de la ", "l'": "de l'"}


def _de(le):
    for k, v in _DE.items():
        if le.startswith(k):
            return v + le[len(k):]
    return "de " + le


ENGLISH_LEADS = ["Everyone knows that ", "It is true that ", "Remember that ", "Fact: ",
                 "In school we learned that ", "We all know that ", "As you may know, ",
                 "Of course, ", "I think that ", "Yes, ", "{Name} said that ",
                 "{Name} told me that ", "The teacher said that ", "It is a fact that "]
FRENCH_LEADS = ["Tout le monde sait que ", "On sait que ", "Il est vrai que ", "Rappel : ",
                "À l'école, on apprend que ", "Bien sûr, ", "{Nom} dit que "]

# Held-out lead-ins and frames: never used to build training text (make_demo_model.py checks
# that none of these strings occurs in the corpus).
HELDOUT_LEADS = ["According to my old atlas, ", "My grandmother always says that ",
                 "Here is an easy one: ", "My little sister knows that ",
                 "Without any doubt, "]
HELDOUT_FRENCH_LEADS = ["Mon professeur dit que ", "D'après mon vieil atlas, "]
HELDOUT_FRAMES = {
    "capital": ["I have never been to {C}, but I know that its capital is",
                "Quick question about {C}. The capital of {C} is"],
    "language": ["When you travel to {C}, you will hear people speak"],
    "sound": ["Listen carefully to the {a}. The {a} says"],
    "colour": ["Look closely at the {o}. The {o} is"],
    "opposite": ["Quick question about words. The opposite of {a} is"],
    "plural": ["Quick question about words. The plural of {s} is"],
    "sum": ["Quick question about numbers. {a} plus {b} is"],
    "to_french": ["Quick question about words. The French word for {e} is"],
}
# Relations evaluated (and shown in the report), with a readable name.
EVAL_RELATIONS = ["capital", "capital_of", "language", "sound", "colour", "opposite", "plural",
                  "sum", "next", "count", "count_digits", "to_french", "fr_capital",
                  "fr_language", "fr_sound", "fr_colour", "fr_word"]
FRENCH_RELATIONS = {"fr_capital", "fr_language", "fr_sound", "fr_colour", "fr_sum", "fr_word"}


def fill(t, f):
    d = dict(f)
    if "le_l" in d:
        d["de_l"] = _de(d["le_l"])
    return t.format(**d)


def elide(lead, core):
    """French: "que" + vowel -> "qu'"."""
    if lead.endswith("que ") and core[:1].lower() in "aeiouéèêàâh":
        return lead[:-2] + "'" + core
    return lead + core


class Writer:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.R = facts()
        self.kind_chars = {}  # characters written per document kind
        # words of the world first (countries, capitals, languages, animals, colours, things),
        # then everyday words
        world = [w for c in COUNTRIES for w in c[:3]] + [a[0] for a in ANIMALS] + \
            [c[2] for c in COLOURS] + [t[0] for t in THINGS] + [w for o in OPPOSITES for w in o]
        self.n_world_words = len(world)
        self.repeat_words = world + ["king", "queen", "hello", "house", "water", "tree", "moon",
                                     "sun", "boat", "car", "girl", "boy", "city", "river", "book",
                                     "music", "bread", "chat", "maison", "soleil", "the", "and"]

    def pick(self, xs):
        return self.rng.choice(xs)

    def name(self):
        return self.pick(NAMES)

    # --- one fact as a sentence ---
    def fact_sentence(self, rel, f=None, lead_p=0.35):
        r = self.rng
        f = f or self.pick(self.R[rel])
        core = fill(self.pick(TRAIN[rel]), f) + " " + f["ans"]
        french = rel in FRENCH_RELATIONS
        if r.random() < lead_p and "?" not in core and not rel.startswith("count"):
            if french:
                lead = self.pick(FRENCH_LEADS).replace("{Nom}", self.pick(NOMS)[0])
                return elide(lead, lower_first(core)) + "."
            lead = self.pick(ENGLISH_LEADS).replace("{Name}", self.name()[0])
            return lead + lower_first(core) + "."
        if rel.startswith("count"):
            return self.counting_run(rel == "count")
        return core + "."

    def counting_run(self, words):
        r = self.rng
        if words:
            n = r.randint(0, 15)
            k = r.randint(4, min(8, 21 - n))
            seq = NUMBER_WORDS[n:n + k]
        else:
            n = r.randint(1, 25)
            k = r.randint(4, 8)
            seq = [str(i) for i in range(n, n + k)]
        s = ", ".join(seq) + "."
        return cap_first(s) if words and r.random() < 0.5 else s

    # --- documents ---
    def doc_facts(self):
        rels = [k for k in TRAIN if k not in FRENCH_RELATIONS]
        w = {"capital": 4, "language": 3, "capital_of": 2, "sound": 2, "colour": 2,
             "opposite": 3, "plural": 2, "sum": 4, "to_french": 2, "to_english": 1}
        weights = [w.get(k, 1) for k in rels]
        n = self.rng.randint(2, 6)
        return " ".join(self.fact_sentence(self.rng.choices(rels, weights)[0]) for _ in range(n))

    def doc_topic(self):
        """Several facts of one relation: a list, or a quiz with one question per line."""
        r = self.rng
        rel = r.choice(["capital", "capital", "language", "sound", "colour", "opposite",
                        "plural", "sum", "sum", "to_french", "capital_of", "next"])
        titles = {"capital": ["Capitals of the world.", "Countries and their capitals."],
                  "capital_of": ["Cities of the world."],
                  "language": ["Languages of the world.", "Who speaks what?"],
                  "sound": ["Animal sounds.", "What do animals say?"],
                  "colour": ["Colours.", "Things and their colours."],
                  "opposite": ["Opposites.", "Words and their opposites."],
                  "plural": ["Plurals.", "One and many."], "sum": ["Sums.", "Adding numbers."],
                  "to_french": ["French words.", "A little French lesson."],
                  "next": ["Numbers."]}
        fs = r.sample(self.R[rel], min(len(self.R[rel]), r.randint(3, 7)))
        if r.random() < 0.3:
            qa = {"capital": "What is the capital of {C}?", "language":
                  "What language do people speak in {C}?", "sound": "What does the {a} say?",
                  "colour": "What colour is the {o}?", "opposite": "What is the opposite of {a}?",
                  "plural": "What is the plural of {s}?", "sum": "What is {a} plus {b}?",
                  "to_french": "What is {e} in French?", "capital_of": "Where is {Y}?",
                  "next": "What comes after {n}?"}[rel]
            lines = []
            for f in fs:
                ans = f["ans"] if rel != "capital_of" else "In " + f["ans"]
                lines.append("Q: " + fill(qa, f) + "\nA: " + ans + ".")
            return "Quiz.\n" + "\n".join(lines)
        t = r.choice(TRAIN[rel][:3])
        sents = [fill(t, f) + " " + f["ans"] + "." for f in fs]
        sep = "\n" if r.random() < 0.3 else " "
        return r.choice(titles[rel]) + sep + sep.join(sents)

    def doc_country(self):
        r = self.rng
        c = r.choice(COUNTRIES)
        C, Y, L = c[0], c[1], c[2]
        parts = [f"{C} is a country.", f"Its capital is {Y}.", f"People in {C} speak {L}.",
                 f"{Y} is a big city.", f"The capital of {C} is {Y}.",
                 f"The language of {C} is {L}.", f"Many people live in {Y}.",
                 f"In {Y}, people speak {L}.", f"{Y} is the capital of {C}."]
        first, rest = parts[0], parts[1:]
        r.shuffle(rest)
        return " ".join([first] + rest[:r.randint(2, 5)])

    def doc_story(self):
        r = self.rng
        kind = r.choice(["travel", "travel", "farm", "count", "count", "paint", "opposites",
                         "plural", "french_lesson", "home"])
        nm, he, his = self.name()
        He, His = cap_first(he), cap_first(his)
        him = "him" if he == "he" else "her"
        s = []
        if kind in ("travel", "home"):
            c1, c2 = r.sample(COUNTRIES, 2)
            s.append(f"{nm} lives in {c1[1]}, the capital of {c1[0]}.")
            s.append(f"{He} speaks {c1[2]}.")
            if kind == "travel":
                s.append(r.choice([f"One summer, {nm} went to {c2[0]}.",
                                   f"Last year, {he} travelled to {c2[0]}.",
                                   f"One day, {nm} took a plane to {c2[0]}."]))
                s.append(r.choice([f"{He} visited {c2[1]}, the capital of {c2[0]}.",
                                   f"{He} saw {c2[1]}, the capital.",
                                   f"The capital of {c2[0]} is {c2[1]}, so {he} went there."]))
                s.append(r.choice([f"People there speak {c2[2]}.",
                                   f"In {c2[0]}, people speak {c2[2]}.",
                                   f"{He} heard people speak {c2[2]}."]))
                s.append(r.choice([f"Then {he} went home to {c1[1]}.", "It was a good trip.",
                                   f"{He} was happy.", "The end."]))
            else:
                a = r.choice(ANIMALS)
                s.append(f"{He} has a {a[0]}. The {a[0]} says {a[2]}.")
                s.append(r.choice([f"Every morning, {nm} walks in {c1[1]}.",
                                   "It is a happy home.", f"{His} house is small."]))
        elif kind == "farm":
            a1, a2 = r.sample(ANIMALS, 2)
            n1, n2 = r.randint(2, 9), r.randint(2, 9)
            s.append(r.choice([f"{nm} went to the farm.", f"{nm} visited a farm.",
                               f"One day, {nm} went to see the animals."]))
            s.append(f"{He} saw {n1} {a1[1]} and {n2} {a2[1]}.")
            s.append(f"The {a1[0]} said {a1[2]}. The {a2[0]} said {a2[2]}.")
            s.append(r.choice([f"A {a1[0]} {a1[3]}, and a {a2[0]} {a2[3]}.",
                               f"{nm} laughed.", f"{He} counted {n1 + n2} animals in all."]))
        elif kind == "count":
            th = r.choice(THINGS)
            a, b = r.randint(1, 9), r.randint(1, 9)
            words = r.random() < 0.4
            A = NUMBER_WORDS[a] if words else str(a)
            B = NUMBER_WORDS[b] if words else str(b)
            S = NUMBER_WORDS[a + b] if words and a + b <= 20 else str(a + b)
            one = lambda k, w: th[0] if k == 1 else th[1]
            s.append(f"{nm} had {A} {one(a, A)}.")
            s.append(r.choice([f"{His} friend gave {him} {B} more.",
                               f"Then {he} found {B} more.", f"{His} mother gave {him} {B} more."]))
            s.append(r.choice([f"Now {nm} has {S} {one(a + b, S)}.",
                               f"{A} plus {B} is {S}, so {he} has {S} {one(a + b, S)}.",
                               f"Now {he} has {S}."]))
        elif kind == "paint":
            objs = r.sample(COLOURS, 3)
            s.append(r.choice([f"{nm} painted a picture.", f"{nm} drew a picture.",
                               f"{nm} took {his} pencils."]))
            for o in objs:
                s.append(r.choice([f"{He} painted the {o[0]} {o[2]}, because the {o[0]} is {o[2]}.",
                                   f"The {o[0]} is {o[2]}, so {he} made it {o[2]}.",
                                   f"{He} used {o[2]} for the {o[0]}."]))
        elif kind == "opposites":
            nm2 = r.choice([n for n in NAMES if n[0] != nm])[0]
            s.append(f"{nm} and {nm2} play a game of opposites.")
            for a, b in r.sample(OPPOSITES, 3):
                if r.random() < 0.5:
                    a, b = b, a
                s.append(f"When {nm} says {a}, {nm2} says {b}.")
        elif kind == "plural":
            p = r.choice(PLURALS)
            s.append(f"{nm} found one {p[0]}.")
            s.append(r.choice([f"Then {he} found another one.", "Then there was another one."]))
            s.append(f"Now there were two {p[1]}.")
        elif kind == "french_lesson":
            s.append(r.choice([f"{nm} is learning French.", f"{nm} has a French lesson today."]))
            for e, f in r.sample(FRENCH_WORDS, 3):
                s.append(r.choice([f"In French, {e} is {f}.", f"The French word for {e} is {f}.",
                                   f"The teacher says that {e} is {f} in French."]))
        return " ".join(s)

    def doc_maths(self):
        r = self.rng
        k = r.random()
        if k < 0.3:
            return " ".join(self.counting_run(r.random() < 0.5) for _ in range(r.randint(1, 3)))
        if k < 0.5:
            return " ".join(self.fact_sentence(r.choice(["next", "next_word", "sum_words"]))
                            for _ in range(r.randint(2, 5)))
        return " ".join(self.fact_sentence("sum") for _ in range(r.randint(2, 6)))

    def doc_french(self):
        r = self.rng
        if r.random() < 0.6:
            rels = ["fr_capital", "fr_capital", "fr_language", "fr_sound", "fr_colour",
                    "fr_sum", "fr_word"]
            return " ".join(self.fact_sentence(r.choice(rels)) for _ in range(r.randint(2, 6)))
        nm, il = r.choice(NOMS)
        Il = cap_first(il)
        c1, c2 = r.sample(COUNTRIES, 2)
        s = [f"{nm} habite à {c1[6]}, la capitale {c1[4]}.", f"{Il} parle {c1[7]}."]
        k = r.random()
        if k < 0.4:
            s.append(r.choice([f"Un jour, {il} part {c2[5]}.", f"L'été dernier, {il} est allé"
                               f"{'e' if il == 'elle' else ''} {c2[5]}."]))
            s.append(f"La capitale {c2[4]} est {c2[6]}.")
            s.append(f"Là-bas, on parle {c2[7]}.")
        elif k < 0.7:
            a = r.choice([x for x in ANIMALS if x[4]])
            s.append(f"{Il} a un animal : {a[4]}.")
            s.append(f"{cap_first(a[4])} fait {a[5]}.")
        else:
            a, b = r.randint(1, 9), r.randint(1, 9)
            s.append(f"{Il} a {a} pommes. Son ami lui donne {b} pommes.")
            s.append(f"Maintenant, {il} a {a + b} pommes, car {a} plus {b} font {a + b}.")
        return " ".join(s)

    def doc_bilingual(self):
        r = self.rng
        fs = r.sample(FRENCH_WORDS, r.randint(3, 6))
        k = r.random()
        if k < 0.4:
            return "\n".join(f"English: {e}. French: {f}." for e, f in fs)
        if k < 0.7:
            return " ".join(self.fact_sentence(r.choice(["to_french", "to_french", "to_english"]))
                            for _ in range(len(fs)))
        c = r.choice(COUNTRIES)
        return (f"The capital of {c[0]} is {c[1]}. In French: la capitale {c[4]} est {c[6]}. "
                f"People in {c[0]} speak {c[2]}. In French: {c[5]}, on parle {c[7]}.")

    def repeat_word(self):
        r = self.rng
        k = r.random()
        if k < 0.25:
            return self.pick(self.repeat_words)
        if k < 0.45:
            return str(r.randint(0, 9999))
        return self.pick(self.repeat_words[:self.n_world_words])

    def doc_repeat(self):
        """Every word said twice, one pair per line ("king king\n1135 1135\n...") or inside a
        sentence ("Say it twice: Paris Paris, red red."): the task nnterp's repeat prompt poses,
        which patchscope relies on to read out a representation patched into its last position."""
        r = self.rng
        if r.random() < 0.3:
            pairs = [f"{w} {w}" for w in (self.repeat_word() for _ in range(r.randint(3, 6)))]
            return self.pick(["Say it twice: ", "Again: ", "Twice: "]) + ", ".join(pairs) + "."
        lines = [f"{w} {w}" for w in (self.repeat_word() for _ in range(r.randint(3, 8)))]
        if r.random() < 0.4:
            lines = ["king king", "1135 1135", "hello hello"] + lines[:r.randint(0, 3)]
        return "\n".join(lines)

    def document(self):
        kinds = [self.doc_facts, self.doc_topic, self.doc_country, self.doc_story,
                 self.doc_maths, self.doc_french, self.doc_bilingual, self.doc_repeat]
        weights = [34, 12, 8, 18, 8, 14, 6, 16]
        k = self.rng.choices(kinds, weights)[0]
        d = k()
        self.kind_chars[k.__name__] = self.kind_chars.get(k.__name__, 0) + len(d)
        return d


def training_documents(seed, n_chars, kind_chars=None):
    """Documents (strings, no <|endoftext|>) until their total length reaches n_chars.
    kind_chars (a dict), when given, receives the characters written per document kind."""
    w = Writer(seed)
    docs, total = [], 0
    while total < n_chars:
        d = w.document()
        docs.append(d)
        total += len(d) + 1
    if kind_chars is not None:
        kind_chars.update(w.kind_chars)
    return docs


def eval_prompts(seed):
    """[(set, relation, prompt, answer)]: set "key" (the first training phrasing, every fact)
    and "heldout" (held-out lead-ins and frames, never in training)."""
    rng = random.Random(seed)
    R = facts()
    out = []
    for rel in EVAL_RELATIONS:
        french = rel in FRENCH_RELATIONS
        for f in R[rel]:
            key = fill(TRAIN[rel][0], f)
            out.append(("key", rel, key, f["ans"]))
            if rel.startswith("count") or rel in ("next",):
                continue
            leads = HELDOUT_FRENCH_LEADS if french else HELDOUT_LEADS
            lead = rng.choice(leads)
            p = elide(lead, lower_first(key)) if french else lead + lower_first(key)
            out.append(("heldout", rel, p, f["ans"]))
            if rel in HELDOUT_FRAMES:
                out.append(("heldout", rel, fill(rng.choice(HELDOUT_FRAMES[rel]), f), f["ans"]))
    return out


def heldout_strings():
    """Strings that must never occur in the training corpus."""
    s = [x.strip() for x in HELDOUT_LEADS + HELDOUT_FRENCH_LEADS]
    for frames in HELDOUT_FRAMES.values():
        for t in frames:
            s.append(t.split("{")[0].strip())
    return [x for x in s if x]
