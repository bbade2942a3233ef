"""The tiny CLIP tokenizer: a byte-level BPE vocabulary in CLIP's format that covers every caption word.

`tiny_tokenizer/` (vocab.json, merges.txt) is built by this module and committed; rebuild it after changing the
caption templates with

    python -m dualmd.text2image.tokenizer src/dualmd/text2image/tiny_tokenizer

The vocabulary is CLIP's layout at a small scale: the 256 byte symbols, the same with the end-of-word marker
"</w>", one token per merge, then "<|startoftext|>" and "<|endoftext|>". Merges are learnt by plain BPE on the
caption words (most frequent pair first, ties broken alphabetically) until every word is one token, so any text
made of caption words tokenizes without splitting words, and any other text still tokenizes (into bytes).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from dualmd.files import write_bytes_atomic

TOKENIZER_DIR = Path(__file__).parent / "tiny_tokenizer"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
#: Token positions the text encoder sees: BOS, up to 14 caption tokens, EOS (captions have <= 12 words).
MAX_LENGTH = 16


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges that turn each word (lowercase ASCII) into a single token ending in "</w>"."""
    pieces = {w: [*w[:-1], w[-1] + END_OF_WORD] for w in sorted(set(words)) if w}
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(p for seq in pieces.values() for p in zip(seq, seq[1:], strict=False))
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent, then alphabetical
        merges.append(best)
        for w, seq in pieces.items():
            pieces[w] = _apply(seq, best)


def _apply(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(seq[i] + seq[i + 1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def build_vocab(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary layout for these merges: bytes, bytes + "</w>", merged tokens, BOS, EOS."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def write_tokenizer_files(out_dir: str | Path, words: Iterable[str]) -> None:
    """Write vocab.json and merges.txt of the BPE vocabulary learnt on `words` into `out_dir`."""
    merges = learn_merges(words)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "vocab.json", (json.dumps(build_vocab(merges), indent=0) + "\n").encode())
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    write_bytes_atomic(out / "merges.txt", ("\n".join(lines) + "\n").encode())


def load_tokenizer(folder: str | Path = TOKENIZER_DIR):
    """The `transformers.CLIPTokenizer` of a vocab.json/merges.txt folder (the shipped tiny one by default),
    padding with EOS to MAX_LENGTH tokens as Stable Diffusion's tokenizer pads to 77."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(Path(folder), model_max_length=MAX_LENGTH, pad_token=EOS)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write the tiny tokenizer files for the current caption templates."""
    from dualmd.text2image.captions import caption_words

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=TOKENIZER_DIR)
    args = parser.parse_args(argv)
    write_tokenizer_files(args.out_dir, caption_words())


if __name__ == "__main__":
    main()
