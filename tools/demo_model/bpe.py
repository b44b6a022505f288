"""A byte-level BPE tokenizer in pure Python, GPT-2's scheme: GPT-2's pre-tokenization regex,
GPT-2's byte-to-unicode map, merges learned by frequency, written as a Hugging Face
tokenizer.json in GPT-2's layout (+ tokenizer_config.json, special_tokens_map.json).

The regex: GPT-2's is  's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
Python's re has no \\p{..}; letters are written [^\\W\\d_] and numbers \\d, and "neither space,
letter nor number" is (?:[^\\s\\w]|_). For the corpus here (ASCII and Latin-1 letters, ASCII digits,
no superscripts or combining marks) these classes are exactly \\p{L} and \\p{N}.
"""
import json
import os
import re
from collections import Counter, defaultdict

EOT = "<|endoftext|>"
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """GPT-2's map from bytes to printable unicode characters, in GPT-2's order."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return list(zip(bs, [chr(c) for c in cs]))


BYTE_PAIRS = bytes_to_unicode()
BYTE_ENC = dict(BYTE_PAIRS)
BYTE_DEC = {c: b for b, c in BYTE_PAIRS}


def pretokenize(text):
    return PAT.findall(text)


def to_symbols(piece):
    return "".join(BYTE_ENC[b] for b in piece.encode("utf-8"))


def train(texts, vocab_size):
    """Learns merges until the vocabulary (256 bytes + merges + <|endoftext|>) has vocab_size
    entries, or no pair occurs twice. Ties on count go to the smallest pair (as strings), so the
    result is deterministic. Returns (vocab dict piece -> id, merges list of (a, b))."""
    counts = Counter()
    for t in texts:
        counts.update(pretokenize(t))
    words = [list(to_symbols(w)) for w in counts]
    freqs = list(counts.values())
    pair_count = Counter()
    where = defaultdict(set)
    for i, (w, f) in enumerate(zip(words, freqs)):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += f
            where[(a, b)].add(i)
    vocab = {c: i for i, (_, c) in enumerate(BYTE_PAIRS)}
    merges = []
    while len(vocab) < vocab_size - 1:
        best = None
        for p, c in pair_count.items():
            if c > 0 and (best is None or c > best[1] or (c == best[1] and p < best[0])):
                best = (p, c)
        if best is None or best[1] < 2:
            break
        (a, b), _ = best
        new = a + b
        merges.append((a, b))
        vocab[new] = len(vocab)
        for i in list(where[(a, b)]):
            w, f = words[i], freqs[i]
            for x, y in zip(w, w[1:]):
                pair_count[(x, y)] -= f
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pair_count[(x, y)] += f
                where[(x, y)].add(i)
        del pair_count[(a, b)]
        del where[(a, b)]
    vocab[EOT] = len(vocab)
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.inv = {i: p for p, i in vocab.items()}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.merges = merges
        self.eot = vocab[EOT]
        self.cache = {}

    @classmethod
    def load(cls, path):
        """From a tokenizer.json written by save()."""
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        merges = [tuple(m.split(" ")) for m in j["model"]["merges"]]
        vocab = dict(j["model"]["vocab"])
        for t in j["added_tokens"]:
            vocab[t["content"]] = t["id"]
        return cls(vocab, merges)

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        w = list(to_symbols(piece))
        while len(w) > 1:
            best, bi = None, -1
            for i in range(len(w) - 1):
                r = self.ranks.get((w[i], w[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            a, b = w[bi], w[bi + 1]
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            w = out
        ids = [self.vocab[s] for s in w]
        self.cache[piece] = ids
        return ids

    def encode(self, text):
        """Ids of text; literal <|endoftext|> becomes its id (as the special token is matched
        first in Hugging Face tokenizers). No BOS is added (add_bos_token is false)."""
        ids = []
        for k, part in enumerate(text.split(EOT)):
            if k:
                ids.append(self.eot)
            for p in pretokenize(part):
                ids.extend(self.bpe(p))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            p = self.inv[i]
            if p == EOT:
                out += p.encode()
            else:
                out += bytes(BYTE_DEC[c] for c in p)
        return out.decode("utf-8", errors="replace")

    def piece(self, i):
        return self.inv[i]

    def save(self, out_dir, model_max_length):
        """tokenizer.json (GPT-2's layout), tokenizer_config.json, special_tokens_map.json."""
        eot_id = self.eot
        bpe_vocab = {p: i for p, i in sorted(self.vocab.items(), key=lambda x: x[1])}
        tok = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": eot_id, "content": EOT, "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": True,
                              "special": True}],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                              "trim_offsets": True, "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                               "trim_offsets": False, "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": bpe_vocab,
                      "merges": [a + " " + b for a, b in self.merges]},
        }
        with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False, indent=2)
            f.write("\n")
        cfg = {
            "add_bos_token": False,
            "add_prefix_space": False,
            "added_tokens_decoder": {str(eot_id): {"content": EOT, "lstrip": False,
                                                   "normalized": True, "rstrip": False,
                                                   "single_word": False, "special": True}},
            "bos_token": EOT,
            "clean_up_tokenization_spaces": False,
            "eos_token": EOT,
            "errors": "replace",
            "model_max_length": model_max_length,
            "pad_token": None,
            "tokenizer_class": "GPT2Tokenizer",
            "unk_token": EOT,
        }
        with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=2)
            f.write("\n")
        stm = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
        with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
            json.dump(stm, f, ensure_ascii=False, indent=2)
            f.write("\n")
