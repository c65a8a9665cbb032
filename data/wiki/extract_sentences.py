"""Extract plain-text sentences from the Wikipedia excerpt that ships in the gensim wheel.

    pip download gensim --no-deps -d /tmp/g && unzip -o /tmp/g/gensim-*.whl \
        'gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2' -d /tmp/g
    python data/wiki/extract_sentences.py /tmp/g/gensim/test/test_data/enwiki-*-shortened.bz2 \
        data/wiki/enwiki_sentences.txt.gz

Wikitext is cleaned with a few regular expressions (templates, references, tables, links,
emphasis, HTML), paragraphs are split into sentences at ". ", "! ", "? " before a capital
letter, and sentences of 5–64 words are kept, deduplicated, in document order.
"""

from __future__ import annotations

import bz2
import gzip
import html
import re
import sys
import xml.etree.ElementTree as ET

MIN_WORDS, MAX_WORDS = 5, 64


def strip_nested(text: str, open_: str, close: str) -> str:
    """Remove balanced ``open_ … close`` spans (templates ``{{…}}``, tables ``{|…|}``)."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_, i):
            depth += 1
            i += len(open_)
        elif depth and text.startswith(close, i):
            depth -= 1
            i += len(close)
        else:
            if depth == 0:
                out.append(text[i])
            i += 1
    return "".join(out)


def clean(wikitext: str) -> str:
    t = html.unescape(wikitext)
    t = re.sub(r"<!--.*?-->", " ", t, flags=re.S)
    t = re.sub(r"<ref[^>]*/>", " ", t)
    t = re.sub(r"<ref[^>]*>.*?</ref>", " ", t, flags=re.S)
    t = re.sub(r"<(math|gallery|timeline|score|code|pre)[^>]*>.*?</\1>", " ", t, flags=re.S)
    t = strip_nested(t, "{{", "}}")
    t = strip_nested(t, "{|", "|}")
    t = re.sub(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", " ", t)
    t = re.sub(r"\[\[[^\]|]*\|([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[\[([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[https?://[^\s\]]+\s*([^\]]*)\]", r"\1", t)
    t = re.sub(r"<[^>]+>", " ", t)
    t = re.sub(r"'{2,}", "", t)
    return t


def sentences(paragraph: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", paragraph)


def good(s: str) -> bool:
    words = s.split()
    if not (MIN_WORDS <= len(words) <= MAX_WORDS) or s[-1] not in ".!?":
        return False
    return not re.search(r"[|{}\[\]=<>*#]|https?:", s) and sum(c.isalpha() for c in s) > 0.6 * len(s)


def main(src: str, dst: str) -> None:
    seen, kept = set(), []
    with bz2.open(src, "rb") as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}text") or not elem.text or elem.text.startswith("#REDIRECT"):
                continue
            for line in clean(elem.text).splitlines():
                line = " ".join(line.split())
                if not line or line[0] in "=*#:;|!":
                    continue
                for s in sentences(line):
                    s = s.strip()
                    if good(s) and s not in seen:
                        seen.add(s)
                        kept.append(s)
            elem.clear()
    with gzip.open(dst, "wt", encoding="utf-8", compresslevel=9) as f:
        f.write("\n".join(kept) + "\n")
    print(f"{len(kept)} sentences written to {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
