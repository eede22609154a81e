"""README.md and docs/*.md: every relative link and anchor resolves, the README stays short, and the
pages speak about the product, not about how it was developed."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_MAX_BYTES = 12_000


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:[^>]*\s)?(?:id|name)=[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are examples, not links)."""
    text = FENCE.sub("", text)
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"<[^>]+>", "", heading)  # HTML tags (an explicit <a id> anchor) are not text
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = text.replace("`", "").replace("*", "").replace("~", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # emphasis underscores, not snake_case ones
    text = text.strip().lower()
    kept = "".join(ch for ch in text if ch in "-_ " or unicodedata.category(ch)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _level, heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text)


def problems(path: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of `path` that names a missing file, leaves `root`, or names a missing anchor."""
    found = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...: not ours to check
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.is_relative_to(root):
            found.append(f"{target}: leaves the repository")
        elif not dest.exists():
            found.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            found.append(f"{target}: no heading or <a id> '{anchor}' in {dest.relative_to(root)}")
    return found


HISTORY = [
    (re.compile(r"\bissues?\b", re.I), "an issue reference"),
    (re.compile(r"(?<![\w&/#])#\d+\b"), "an issue or pull request number"),
    (re.compile(r"\b(?:this|previous|last|earlier) session\b", re.I), "a development session"),
    (re.compile(r"\bcommits? [0-9a-f]{7,40}\b", re.I), "a commit hash"),
    (re.compile(r"\bbefore, those\b|\bno longer reads\b|\bbefore this round\b", re.I), "a before/after story"),
]


def history(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, what in HISTORY:
            match = pattern.search(line)
            if match:
                found.append(f"line {number}: {what}: {match.group(0)!r}")
    return found


@pytest.mark.parametrize("path", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    assert problems(path) == []


@pytest.mark.parametrize("path", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_history(path: Path) -> None:
    assert history(path.read_text(encoding="utf-8")) == []


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail to docs/"


def test_docs_pages_are_linked_from_the_readme() -> None:
    targets = {target.partition("#")[0] for target in links(README)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in targets, f"README.md does not link docs/{page.name}"


# ---- the checker itself -------------------------------------------------------------------------


def test_slugs_follow_github() -> None:
    assert slug("What it is, and for whom") == "what-it-is-and-for-whom"
    assert slug("TLS and basic auth: `--web-config FILE`") == "tls-and-basic-auth---web-config-file"
    assert slug("Trying it on one machine: `deploy/local-stack`") == "trying-it-on-one-machine-deploylocal-stack"
    assert slug('<a id="runbook-logtailddown"></a>LogtaildDown') == "logtailddown"
    assert slug("The `state_file` and **cron**") == "the-state_file-and-cron"


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text('# Other page\n\n### <a id="runbook-x"></a>X\n')
    page = tmp_path / "docs" / "page.md"
    page.write_text("# Title\n\n[a](../../outside.md) [b](nope.md) [c](other.md#no-such-heading)\n"
                    "[ok](other.md#other-page) [ok](other.md#runbook-x) [ok](#title) [ok](https://example.org/)\n"
                    "![img](missing.png) `[code](not-a-link.md)`\n\n```\n[x](in-a-fence.md)\n```\n"
                    "[ref]: ../missing-ref.md\n")
    assert problems(page, tmp_path) == [
        "../../outside.md: leaves the repository",
        "nope.md: no such file",
        "other.md#no-such-heading: no heading or <a id> 'no-such-heading' in docs/other.md",
        "missing.png: no such file",
        "../missing-ref.md: no such file",
    ]


def test_the_checker_finds_history() -> None:
    for text in ("as asked in issue #12", "fixed in #7", "in this session", "the previous session's run",
                 "logtaild at commit 3104bd0", "before, those lines were lost"):
        assert history(text), text
    for text in ("`PATH.<digits>`", "&#8203;", "[x](#runbook-x)", "rotated files found by inode",
                 "the rates cover the time since the previous run"):
        assert not history(text), text
