"""Derive CLIP's tokenizer files (vocab.json, merges.txt) from the BPE merge list that ships with open_clip.

SD1.x, SD2.x and SDXL all read prompts with CLIP's byte-level BPE: 49,408 tokens, `<|startoftext|>` = 49406,
`<|endoftext|>` = 49407. The merge list is MIT-licensed (OpenAI's CLIP, redistributed by open_clip) and ships inside
the open-clip-torch wheel as `open_clip/bpe_simple_vocab_16e6.txt.gz`. We do not depend on open-clip-torch (it pulls
torchvision); this script turns that one file into the two files transformers' CLIPTokenizer reads, once, and the
results are committed under engine/configs/clip_tokenizer/ beside the licence.

How the vocabulary follows from the merge list (the construction CLIP's own tokenizer uses):
  1. the first line of the file is a header; the next 49,152 - 256 - 2 = 48,894 lines are merges ("a b" pairs)
     in rank order (the rest of the file is never used by CLIP);
  2. token ids 0..255 are the 256 byte stand-ins of byte-level BPE (printable bytes stand for themselves, the others
     are shifted to U+0100 and up), in the order: '!'..'~', '¡'..'¬', '®'..'ÿ', then every remaining byte ascending;
  3. ids 256..511 are the same 256 stand-ins with the end-of-word marker '</w>' appended;
  4. ids 512.. are the merges' concatenations, in rank order;
  5. the last two ids are '<|startoftext|>' (49406) and '<|endoftext|>' (49407).
merges.txt is the header `#version: 0.2` followed by the 48,894 merges, one per line.

    pip download --no-deps open-clip-torch -d /tmp/oc
    python tools/derive_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl engine/configs/clip_tokenizer
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import zipfile
from pathlib import Path

MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
MERGE_COUNT = 49152 - 256 - 2
VOCAB_SIZE = 49408
START, END = "<|startoftext|>", "<|endoftext|>"


def byte_stand_ins() -> list[str]:
    """The 256 characters byte-level BPE writes for the byte values, in CLIP's id order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def read_merge_list(source: Path) -> tuple[bytes, list[tuple[str, str]]]:
    """The gzipped merge list, from the wheel or from the extracted .gz; returns its raw bytes and the merges."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(MEMBER)
    else:
        raw = source.read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = []
    for line in lines[1 : 1 + MERGE_COUNT]:
        first, second = line.split()
        merges.append((first, second))
    return raw, merges


def derive(merges: list[tuple[str, str]]) -> dict[str, int]:
    alphabet = byte_stand_ins()
    tokens = alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges] + [START, END]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or vocab[START] != 49406 or vocab[END] != 49407:
        raise SystemExit(f"unexpected vocabulary: {len(vocab)} tokens")
    return vocab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the open-clip-torch wheel or its bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("out", type=Path, help="folder for vocab.json and merges.txt")
    args = parser.parse_args(argv)
    raw, merges = read_merge_list(args.source)
    vocab = derive(merges)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (args.out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(vocab)} tokens, {len(merges)} merges from {MEMBER} (sha256 {hashlib.sha256(raw).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
