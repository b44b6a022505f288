#!/usr/bin/python3
"""Writes the tokenizer benchmark's corpus: one document per line, deterministic for a seed.

Usage: tools/make_corpus.py --out FILE [--mb 50] [--seed 0] [--shared ../shared]

Mostly English prose, like a real dataset of prompts: sentences built from a frequency-ranked
list of common English words plus a long tail of made-up words (names, rare words, typos) drawn
with Zipf weights, with capitals, commas, quotes, contractions, numbers, prices, dates. Mixed in:
code-like documents, and documents that splice the `text` fields of the shared tokenizer tests
(shared/tokenizers/*/tests*.jsonl: accents, CJK, emoji, RTL and Indic scripts, control
characters, URLs, numbers, odd whitespace) into prose. Literal special tokens (<|endoftext|>,
<s>, ...) are left out: a real corpus does not hold them, and the reference encoders treat them
differently. Newlines inside a seed text become spaces. Line lengths are log-uniform in 50..2000
bytes (UTF-8), cut at a character boundary.

Only the standard library is used, and only random.Random(seed), so the same arguments give the
same bytes on any machine with the same shared/ files.
"""
import argparse
import glob
import json
import math
import os
import random
import sys

COMMON = """
the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by not word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long
make thing see him two has look more day could go come did number sound no most people my over
know water than call first who may down side been now find any new work part take get place made
live where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
head stand own page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start might story saw
far sea draw left late run while press close night real life few north open seem together next
white children begin got walk example ease paper group always music those both mark often letter
until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual
young ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half rock
order fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow center
love person money serve appear road map rain rule govern pull cold notice voice unit power town
fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct
able pound done beauty drive stood contain front teach week final gave green oh quick develop
ocean warm free minute strong special mind behind clear tail produce fact street inch multiply
nothing course stay wheel full force blue object decide surface deep moon island foot system busy
test record boat common gold possible plane stead dry wonder laugh thousand ago ran check game
shape equate hot miss brought heat snow tire bring yes distant fill east paint language among
grand ball yet wave drop heart am present heavy dance engine position arm wide sail material size
vary settle speak weight general ice matter circle pair include divide syllable felt perhaps pick
sudden count square reason length represent art subject region energy hunt probable bed brother
egg ride cell believe fraction forest sit race window store summer train sleep prove lone leg
exercise wall catch mount wish sky board joy winter sat written wild instrument kept glass grass
cow job edge sign visit past soft fun bright gas weather month million bear finish happy hope
flower clothe strange gone jump baby eight village meet root buy raise solve metal whether push
seven paragraph third shall held hair describe cook floor either result burn hill safe cat century
consider type law bit coast copy phrase silent tall sand soil roll temperature finger industry
value fight lie beat excite natural view sense ear else quite broke case middle kill son lake
moment scale loud spring observe child straight consonant nation dictionary milk speed method
organ pay age section dress cloud surprise quiet stone tiny climb cool design poor lot experiment
bottom key iron single stick flat twenty skin smile crease hole trade melody trip office receive
row mouth exact symbol die least trouble shout except wrote seed tone join suggest clean break
lady yard rise bad blow oil blood touch grew cent mix team wire cost lost brown wear garden equal
sent choose fell fit flow fair bank collect save control decimal gentle woman captain practice
separate difficult doctor please protect noon whose locate ring character insect caught period
indicate radio spoke atom human history effect electric expect crop modern element hit student
corner party supply bone rail imagine provide agree thus capital chair danger fruit rich thick
soldier process operate guess necessary sharp wing create neighbor wash bat rather crowd corn
compare poem string bell depend meat rub tube famous dollar stream fear sight thin triangle planet
hurry chief colony clock mine tie enter major fresh search send yellow gun allow print dead spot
desert suit current lift rose continue block chart hat sell success company subtract event
particular deal swim term opposite wife shoe shoulder spread arrange camp invent cotton born
determine quart nine truck noise level chance gather shop stretch throw shine property column
molecule select wrong gray repeat require broad prepare salt nose plural anger claim continent
oxygen sugar death pretty skill women season solution magnet silver thank branch match suffix
especially fig afraid huge sister steel discuss forward similar guide experience score apple
bought led pitch coat mass card band rope slip win dream evening condition feed tool total basic
smell valley nor double seat arrive master track parent shore division sheet substance favor
connect post spend chord fat glad original share station dad bread charge proper bar offer segment
slave duck instant market degree populate chick dear enemy reply drink occur support speech nature
range steam motion path liquid log meant quotient teeth shell neck
""".split()

FUNCTION = "the of and to a in is it that for on with as was at by be this from or an but not are".split()
CONTRACTIONS = ["don't", "it's", "I'm", "can't", "won't", "didn't", "that's", "we're", "they're",
                "isn't", "you'll", "she'd", "I've", "wouldn't", "let's", "there's"]
ONSETS = ["", "b", "bl", "br", "c", "ch", "cl", "cr", "d", "dr", "f", "fl", "fr", "g", "gl", "gr",
          "h", "j", "k", "l", "m", "n", "p", "ph", "pl", "pr", "qu", "r", "s", "sc", "sh", "sk",
          "sl", "sm", "sn", "sp", "st", "str", "sw", "t", "th", "tr", "v", "w", "wh", "y", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "ou", "oo", "y", "ie", "au"]
CODAS = ["", "", "b", "ck", "d", "ft", "g", "l", "ll", "m", "mp", "n", "nd", "ng", "nt", "p",
         "r", "rd", "rk", "rn", "s", "sh", "ss", "st", "t", "th", "x", "ze"]
SUFFIXES = ["", "", "", "s", "ed", "ing", "er", "ly", "tion", "ness", "ment", "able", "ist",
            "ism", "ize", "ous", "ful", "less", "ity", "al"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
CODE_LINES = [
    "def {f}({a}, {b}=None):", "    return {a} + {b}", "for {a} in range({n}):",
    "    {b}.append({a} * {n})", "if {a} is not None and {b} > {n}:", "{a} = {{'{b}': {n}, '{f}': [{n}, {m}]}}",
    "int {f}(int {a}, const char *{b}) {{", "    if ({a} < {n}) return -1;", "}}",
    "const {a} = await fetch(`/api/{b}/${{{f}}}`);", "SELECT {a}, {b} FROM {f} WHERE id = {n};",
    "import {f} from './{b}.js';", "class {F}({G}):", "    self.{a} = {b}.{f}()",
    "# TODO: handle the {a} case ({n} items)", "// {a}: {b} must be < {m}",
    "std::vector<{G}> {a}({n});", "print(f\"{{{a}}} -> {{{b}:.3f}}\")", "x[{n}:{m}] = 0x{h}",
    "assert {f}({a}) == {m}, '{b} failed'", "$ {f} --{a}={n} {b}.txt | grep -v '{b}'",
]
SPECIAL = ("<|endoftext|>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>")


def zipf_weights(n, s=1.07):
    return [1.0 / (r + 1) ** s for r in range(n)]


class Gen:
    def __init__(self, seed, seeds_text):
        self.r = random.Random(seed)
        r = self.r
        # A long tail of made-up words, each with a fixed spelling.
        tail, seen = [], set(COMMON)
        while len(tail) < 40000:
            w = "".join(r.choice(ONSETS) + r.choice(VOWELS) + r.choice(CODAS)
                        for _ in range(r.choice((1, 2, 2, 2, 3))))
            w += r.choice(SUFFIXES)
            if 2 <= len(w) <= 14 and w not in seen:
                seen.add(w)
                tail.append(w)
        self.tail = tail
        self.names = [w.capitalize() for w in tail[:3000]]
        self.common_cum = self._cum(zipf_weights(len(COMMON)))
        self.tail_cum = self._cum([1.0 / (k + 20) for k in range(len(tail))])
        self.name_cum = self._cum([1.0 / (k + 20) for k in range(len(self.names))])
        self.seeds = seeds_text
        self.exotic = [t for t in seeds_text if any(ord(c) > 127 for c in t)]
        self.code_seeds = [t for t in seeds_text if any(c in t for c in "{}();=[]<>")]

    @staticmethod
    def _cum(w):
        out, s = [], 0.0
        for x in w:
            s += x
            out.append(s)
        return out

    def pick(self, items, cum):
        return self.r.choices(items, cum_weights=cum, k=1)[0]

    def word(self):
        r = self.r
        x = r.random()
        if x < 0.30:
            return r.choice(FUNCTION)
        if x < 0.87:
            return self.pick(COMMON, self.common_cum)
        if x < 0.93:
            return self.pick(self.tail, self.tail_cum)
        if x < 0.96:
            return self.pick(self.names, self.name_cum)
        if x < 0.975:
            return r.choice(CONTRACTIONS)
        return self.number()

    def number(self):
        r = self.r
        k = r.randrange(9)
        if k == 0:
            return str(r.randrange(1800, 2030))
        if k == 1:
            return f"${r.randrange(1, 5000)}.{r.randrange(100):02d}"
        if k == 2:
            return f"{r.randrange(1, 100)}%"
        if k == 3:
            return f"{r.randrange(1, 1000000):,}"
        if k == 4:
            return f"{r.choice(MONTHS)} {r.randrange(1, 29)}"
        if k == 5:
            return f"{r.random() * 100:.{r.randrange(1, 4)}f}"
        if k == 6:
            return f"{r.randrange(1, 13)}:{r.randrange(60):02d}"
        return str(r.randrange(1, 1000))

    def sentence(self):
        r = self.r
        n = max(3, int(r.gauss(14, 6)))
        words = [self.word() for _ in range(n)]
        words[0] = words[0][:1].upper() + words[0][1:]
        for i in range(1, n - 1):
            if r.random() < 0.07:
                words[i] += ","
        if r.random() < 0.05:
            i = r.randrange(n)
            j = min(n, i + r.randrange(1, 5))
            words[i] = "(" + words[i]
            words[j - 1] += ")"
        end = r.choices((".", "?", "!", ":", ";", "..."), (80, 8, 5, 2, 2, 1))[0]
        s = " ".join(words) + end
        if r.random() < 0.08:
            s = '"' + s + '" ' + r.choice(("said", "asked", "wrote", "replied")) + " " + \
                self.pick(self.names, self.name_cum) + "."
        return s

    def prose(self, target):
        parts, size = [], 0
        while size < target:
            s = self.sentence()
            parts.append(s)
            size += len(s) + 1
        return " ".join(parts)

    def seeded(self, target, pool):
        """Prose with seed texts spliced in between sentences."""
        r = self.r
        parts, size = [], 0
        while size < target:
            s = r.choice(pool) if r.random() < 0.4 else self.sentence()
            parts.append(s)
            size += len(s.encode()) + 1
        return " ".join(parts)

    def code(self, target):
        r = self.r
        parts, size = [], 0
        while size < target:
            if self.code_seeds and r.random() < 0.15:
                s = r.choice(self.code_seeds)
            else:
                a, b, f = (self.pick(self.tail, self.tail_cum).replace("'", "") for _ in range(3))
                s = r.choice(CODE_LINES).format(
                    a=a, b=b + "_" + self.pick(COMMON, self.common_cum), f=f, F=f.capitalize(),
                    G=a.capitalize(), n=r.randrange(1000), m=r.randrange(100000),
                    h=format(r.getrandbits(32), "08x"))
            parts.append(s)
            size += len(s) + 1
        return (" " if r.random() < 0.5 else "\t").join(parts)

    def document(self):
        r = self.r
        target = int(math.exp(r.uniform(math.log(50), math.log(2000))))
        k = r.random()
        if k < 0.82:
            doc = self.prose(target)
        elif k < 0.88:
            doc = self.code(target)
        elif k < 0.94:
            doc = self.seeded(target, self.exotic)
        else:
            doc = self.seeded(target, self.seeds)
        doc = doc.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
        data = doc.encode()
        if len(data) > 2000:  # cut at a character boundary
            data = data[:2000]
            while data and (data[-1] & 0xC0) == 0x80:
                data = data[:-1]
            if data and data[-1] >= 0xC0:
                data = data[:-1]
            data = data.rstrip(b" ")
        return data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--mb", type=float, default=50.0, help="size in MB (10^6 bytes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "..", "..", "shared"))
    a = ap.parse_args()

    files = sorted(glob.glob(os.path.join(a.shared, "tokenizers", "*", "tests*.jsonl")))
    if not files:
        sys.exit(f"make_corpus.py: no tokenizer tests under {a.shared}/tokenizers "
                 "(the shared data folder beside the repository)")
    seeds = set()
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                t = json.loads(line).get("text", "")
                if t.strip() and not any(s in t for s in SPECIAL):
                    seeds.add(t)
    seeds = sorted(seeds)

    gen = Gen(a.seed, seeds)
    limit = int(a.mb * 1e6)
    size = lines = 0
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as out:
        while size < limit:
            doc = gen.document()
            if len(doc) < 50:
                continue
            out.write(doc + b"\n")
            size += len(doc) + 1
            lines += 1
    os.replace(tmp, a.out)
    print(f"make_corpus.py: {a.out}: {lines} lines, {size} bytes, seed {a.seed}", file=sys.stderr)


if __name__ == "__main__":
    main()
