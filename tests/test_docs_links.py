"""Links of README.md and docs/*.md: every relative target exists, every anchor names a heading.

The pages are read on the repository host (GitHub) without any site generator, so a link is right
when GitHub resolves it: a relative path from the page's folder, and an ``#anchor`` that is the
GitHub slug of a heading of the target page (``github_slug`` below, GitHub's rule: lower-case,
punctuation dropped, each space a hyphen, ``-1``, ``-2`` … for repeated headings). External
``http(s)``/``mailto`` links are not fetched. Links into ``../shared`` (the tutorials, which live
beside the repository, not in it) are checked when that folder is present.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets and wrap onto
# the next lines (not across a blank line).
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]\n]|\n(?![ \t]*\n)|\[[^\[\]\n]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*<?(\S+?)>?(?:[ \t]+\"[^\"\n]*\")?[ \t]*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, …


def github_slug(heading_text: str) -> str:
    """The anchor GitHub gives a heading, before de-duplication.

    Parameters
    ----------
    heading_text : str
        The heading as rendered (Markdown markup already reduced to its text).

    Returns
    -------
    str
        Lower-cased; every character that is not a letter, mark, decimal or letter number, connector
        punctuation (``_``), ASCII space or hyphen dropped; each space then a hyphen (GitHub's rule,
        ``[^\\p{Word}\\- ]`` removed).
    """
    kept = [ch for ch in heading_text.lower() if ch in " -" or _is_word_character(ch)]
    return "".join(kept).replace(" ", "-")


def _is_word_character(ch: str) -> bool:
    """Ruby's ``\\p{Word}``, which GitHub keeps: letters, marks, decimal and letter numbers (not ``²``),
    connector punctuation."""
    category = unicodedata.category(ch)
    return category[0] in "LM" or category in ("Nd", "Nl", "Pc")


def rendered_heading_text(markdown: str) -> str:
    """The text of a heading line's content as GitHub renders it: code spans keep their text, links
    their label, emphasis markers and inline HTML tags go."""
    spans: list[str] = []

    def keep_code(match: re.Match[str]) -> str:
        spans.append(match.group(2).strip())
        return f"\x00{len(spans) - 1}\x00"

    text = CODE_SPAN.sub(keep_code, markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(\*{1,3})(\S(?:.*?\S)?)\1", r"\2", text)  # *em*, **strong**
    text = re.sub(r"(?<![\w\x00])(_{1,3})(\S(?:.*?\S)?)\1(?![\w\x00])", r"\2", text)  # _em_, __strong__
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], text)


def anchors_of(markdown: str) -> set[str]:
    """Every anchor a Markdown page offers: heading slugs (repeats numbered -1, -2 …) and HTML anchors."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(markdown):
        anchors.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(rendered_heading_text(match.group(2) or ""))
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        seen.setdefault(slug, 0)
        anchors.add(slug)
    return anchors


def prose_lines(markdown: str) -> list[str]:
    """The lines outside fenced code blocks (a fence closes on the same character, at least as long)."""
    lines: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
        else:
            lines.append(line)
    return lines


def link_targets(markdown: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code.

    A link's text may wrap onto the next line (the pages are wrapped at ~105 characters), so the
    prose is searched as a whole, with fenced blocks and code spans blanked out in place.
    """
    lines: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            lines.append("")
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            lines.append("")
        else:
            lines.append(CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line))
    prose = "\n".join(lines)
    found = [(m.start(), m.group(1)) for m in REFERENCE_DEF.finditer(prose)]
    found += [(m.start(), m.group(1)) for m in INLINE_LINK.finditer(prose)]
    return [(prose.count("\n", 0, start) + 1, target) for start, target in sorted(found)]


def documentation_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def broken_links(page: Path, repo: Path = REPO, shared: Path = SHARED) -> list[str]:
    """One line per link of ``page`` (a Markdown file below ``repo``) whose file or anchor does not exist."""
    problems: list[str] = []
    name = page.relative_to(repo).as_posix()
    for number, raw in link_targets(page.read_text(encoding="utf-8")):
        if not raw or EXTERNAL.match(raw):
            continue
        path_part, _, anchor = raw.partition("#")
        # normalised, not resolved: ../shared may be a link to the specs elsewhere, and is still ../shared
        target = Path(os.path.normpath(page.parent / unquote(path_part))) if path_part else page
        where = f"{name}:{number}: {raw}"
        if not target.is_relative_to(repo):
            if not target.is_relative_to(shared):
                problems.append(f"{where}: leaves the repository (only ../shared is allowed beside it)")
                continue
            if not shared.is_dir():
                continue  # ../shared is absent in this checkout: nothing to check against
        if not target.exists():
            problems.append(f"{where}: no such file {target}")
            continue
        if anchor and target.suffix == ".md" and target.is_file():
            if unquote(anchor) not in anchors_of(target.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading with anchor #{anchor} in {target.name}")
    return problems


# --- the slug rule on the kinds of heading our pages have ---------------------------------------------


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Common behaviour of every routine", "common-behaviour-of-every-routine"),
        ("VerSe (spine CT)", "verse-spine-ct"),
        ("Exit codes, re-runs and shared outputs", "exit-codes-re-runs-and-shared-outputs"),
        ("### `small_connected_region_detect.py` — report small 3D regions",
         "small_connected_region_detectpy--report-small-3d-regions"),
        ("### `mask_thresholding.py` (ESO)", "mask_thresholdingpy-eso"),
        ("## Training exports: nnU-Net v2, MONAI, SAT-DS", "training-exports-nnu-net-v2-monai-sat-ds"),
        ("## What nnU-Net's `verify_dataset_integrity` reports on the same problems",
         "what-nnu-nets-verify_dataset_integrity-reports-on-the-same-problems"),
        ("## The check: `utils.files.nifti_readers.check_reader_agreement`", "the-check-utilsfilesnifti_readerscheck_reader_agreement"),
        ("## Inputs/outputs and *where* they go", "inputsoutputs-and-where-they-go"),
        ("## 2. The file: `qc_review.yaml` (a contract)", "2-the-file-qc_reviewyaml-a-contract"),
        ("## Duplicates (reported as pairs: on the later sample, the other in `related`)",
         "duplicates-reported-as-pairs-on-the-later-sample-the-other-in-related"),
        ("## 01 – archive manifest", "01--archive-manifest"),
        ("## See [the geometry page](geometry.md) and __why__", "see-the-geometry-page-and-why"),
        ("## Größe und Ausrichtung", "größe-und-ausrichtung"),
        ("## nnU-Net v2 ##", "nnu-net-v2"),
        ("## Volumes in mm³ and cm³ — ½ of it", "volumes-in-mm-and-cm---of-it"),
    ],
)
def test_github_slug_of_a_heading(heading: str, slug: str) -> None:
    line = heading if heading.startswith("#") else f"## {heading}"
    assert anchors_of(line) == {slug}


def test_repeated_headings_get_numbered_anchors() -> None:
    page = "# Tests\n\n## Tests\n\n```sh\n# Tests (a comment in code, not a heading)\n```\n\n### Tests\n## Other\n"
    assert anchors_of(page) == {"tests", "tests-1", "tests-2", "other"}


def test_links_are_found_outside_code_only() -> None:
    page = (
        "See [a](a.md#x), ![pic](img/p.png) and `[not](a link)`.\n"
        "[`code` label](b.md) [ref]: no\n"
        "```\n[in code](c.md)\n```\n"
        "[d]: d.md#y\n"
        "a link [wrapped over\ntwo lines](e.md) and [not over\n\na blank line](f.md)\n"
    )
    assert link_targets(page) == [(1, "a.md#x"), (1, "img/p.png"), (2, "b.md"), (6, "d.md#y"), (7, "e.md")]


def test_a_broken_link_and_anchor_are_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## The `x` option\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/a.md#the-x-option) [bad anchor](docs/a.md#the-x-options) [gone](docs/b.md)\n"
        "[here](#a-title) [out](../elsewhere/x.md)\n# A title\n",
        encoding="utf-8",
    )
    problems = broken_links(readme, repo=tmp_path, shared=tmp_path / "shared")
    assert len(problems) == 3
    assert "no heading with anchor #the-x-options" in problems[0]
    assert "no such file" in problems[1]
    assert "leaves the repository" in problems[2]


def test_a_shared_folder_that_is_a_link_counts_as_shared(tmp_path: Path) -> None:
    (tmp_path / "elsewhere" / "specs").mkdir(parents=True)
    (tmp_path / "elsewhere" / "specs" / "t.md").write_text("# T\n", encoding="utf-8")
    (tmp_path / "shared").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "repo").mkdir()
    readme = tmp_path / "repo" / "README.md"
    readme.write_text("[t](../shared/specs/t.md#t) [gone](../shared/specs/u.md) [out](../elsewhere/specs/t.md)\n", encoding="utf-8")
    problems = broken_links(readme, repo=tmp_path / "repo", shared=tmp_path / "shared")
    assert len(problems) == 2
    assert problems[0].startswith("README.md:1: ../shared/specs/u.md: no such file")
    assert problems[1] == "README.md:1: ../elsewhere/specs/t.md: leaves the repository (only ../shared is allowed beside it)"


# --- the repository's pages -------------------------------------------------------------------------


@pytest.mark.parametrize("page", documentation_pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = REPO / "README.md"
    linked = {
        (REPO / unquote(target.partition("#")[0])).resolve()
        for _, target in link_targets(readme.read_text(encoding="utf-8"))
        if not EXTERNAL.match(target)
    }
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == []


def test_readme_stays_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_ci_runs_the_readmes_test_command_with_the_linter_first():
    """``.ci/run`` runs the README's second command (pip quietly); ``ruff check`` runs before the tests."""
    blocks = re.findall(r"^```sh\n(.*?)\n```", (REPO / "README.md").read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    test_command = blocks[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1]
    assert ci == test_command.replace("pip install -r", "pip install -q -r")
    assert test_command.endswith("&& ruff check . && python -m pytest")
    assert re.search(r"^ruff==\d+\.\d+\.\d+$", (REPO / "requirements-dev.txt").read_text(encoding="utf-8"), re.MULTILINE)
