"""Format detection (a file without `format:`) and the format advisor: the first lines choose, each line is
counted once with the chosen format, the TSV fast path stays, and mostly malformed first lines are named.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from logtaild.config import FileConfig
from logtaild.count import slots
from logtaild.count.aggregate import Aggregator
from logtaild.count.detect import best, sample
from logtaild.count.parsers import PARSERS, AutoParser, FormatAdvisor, candidates, make_parser
from logtaild.count.routes import RouteLimiter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
APACHE = (FIXTURES / "apache-combined-3000.log").read_bytes().splitlines()
TSV = [b"10.0.0.%d\tGET /p/%d\t200\t5\t%d" % (i % 250, i % 7, i % 40) for i in range(400)]
JSON = [json.dumps({"path": f"/j{i % 5}", "status": 200, "latency_ms": 3}).encode() for i in range(300)]
AUTO = FileConfig("x")


def detected(lines: list[bytes], config: FileConfig = AUTO) -> tuple[str | None, list[tuple[str, int, int]]]:
    said: list[tuple[str, int, int]] = []
    parser = make_parser(config, on_detect=lambda *args: said.append(args))
    assert isinstance(parser, AutoParser)
    parser.choose(lines)
    return parser.chosen, said


@pytest.mark.parametrize(("lines", "name"), [(TSV, "tsv"), (JSON, "json"), (APACHE, "combined"),
                                             ((FIXTURES / "nginx-combined-edge-cases.log").read_bytes().splitlines(),
                                              "combined")])
def test_the_first_lines_choose_the_format(lines: list[bytes], name: str) -> None:
    chosen, said = detected(lines)
    assert chosen == name
    assert said == [(name, min(20, len(lines)), min(20, len(lines)))]


def test_a_few_bad_first_lines_do_not_mislead() -> None:
    chosen, said = detected([b"garbage", b"", b"\x16\x03\x01"] + APACHE[:30])
    assert chosen == "combined" and said == [("combined", 18, 20)]  # empty lines are not looked at


def test_nothing_parses_yet_stays_undecided_then_tsv() -> None:
    parser = make_parser(AUTO)
    assert isinstance(parser, AutoParser)
    assert parser.choose([b"junk"] * 10) is PARSERS["tsv"] and not parser.decided
    parser.choose([b"junk"] * 95)
    assert parser.decided and parser.chosen == "tsv"  # past the first 100 lines: the historical default
    later = make_parser(AUTO)
    assert isinstance(later, AutoParser)
    later.choose([b"junk"])
    later.choose(APACHE[:5])
    assert later.chosen == "combined"


def test_a_latency_unit_in_seconds_leaves_tsv_out() -> None:
    assert "tsv" not in candidates(FileConfig("x", latency_unit="seconds"))
    assert detected(APACHE, FileConfig("x", latency_unit="seconds"))[0] == "combined"


def test_best_prefers_the_first_on_a_tie() -> None:
    assert best([b"x"], {"tsv": PARSERS["tsv"], "json": PARSERS["json"]}) == (None, 0)
    assert sample([b"", b" ", b"a", b"b"], 1) == [b"a"]


def feed(agg: Aggregator, lines: list[bytes], batch: int) -> None:
    for start in range(0, len(lines), batch):
        agg.feed(lines[start:start + batch])


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_every_line_is_counted_once_with_the_detected_format(batch: int) -> None:
    auto = Aggregator(RouteLimiter(100), [5.0, 50.0], make_parser(AUTO))
    feed(auto, APACHE, batch)
    explicit = Aggregator(RouteLimiter(100), [5.0, 50.0], make_parser(FileConfig("x", "combined")))
    feed(explicit, APACHE, batch)
    assert auto.lines == 3000 and sum(auto.malformed.values()) == 0
    assert auto.slots == explicit.slots


def test_a_detected_tsv_file_gets_the_fast_path() -> None:
    auto = Aggregator(RouteLimiter(100), [5.0, 50.0], make_parser(AUTO))
    assert not auto._fast
    feed(auto, TSV, 50)
    assert auto._fast and auto.parser is PARSERS["tsv"]
    explicit = Aggregator(RouteLimiter(100), [5.0, 50.0], PARSERS["tsv"])
    feed(explicit, TSV, 50)
    assert auto.slots == explicit.slots
    assert sum(slots.count(s) for s in auto.slots.values()) == 400


def test_the_advisor_names_the_format_that_parses_the_lines() -> None:
    config = FileConfig("x", "tsv")
    advisor = FormatAdvisor(config, make_parser(config))
    assert advisor.feed(APACHE[:60]) is None
    message = advisor.feed(APACHE[60:200])
    assert message == ("100 of the first 100 lines are malformed for format tsv; format combined parses 100 of "
                       "them: set `format: combined` for this file")
    assert advisor.feed(APACHE) is None and advisor.finish() is None  # once


def test_the_advisor_is_quiet_when_most_lines_parse() -> None:
    config = FileConfig("x", "combined")
    advisor = FormatAdvisor(config, make_parser(config))
    assert advisor.feed([b"junk"] * 40 + APACHE[:60]) is None


def test_the_advisor_says_when_no_format_fits() -> None:
    config = FileConfig("x", "json")
    advisor = FormatAdvisor(config, make_parser(config))
    advisor.feed([b"junk line"] * 3)
    assert advisor.finish() == ("3 of the first 3 lines are malformed for format json, and no format detected "
                                "parses them: set `format: nginx` or `apache` with the server's `log_format`")


def test_the_advisor_of_an_auto_file_judges_the_detected_format() -> None:
    parser = make_parser(AUTO)
    agg = Aggregator(RouteLimiter(100), [5.0], parser)
    advisor = FormatAdvisor(AUTO, parser)
    agg.feed(APACHE[:10])
    assert advisor.format_name() == "combined"
    assert advisor.feed(APACHE[:10]) is None and advisor.finish() is None


def test_an_undecided_file_is_judged_once_detection_has_decided() -> None:
    parser = make_parser(AUTO)
    agg = Aggregator(RouteLimiter(100), [5.0], parser)
    advisor = FormatAdvisor(AUTO, parser)
    agg.feed([b"junk"] * 5)
    advisor.feed([b"junk"] * 5)
    assert advisor.finish() is None and isinstance(parser, AutoParser) and not parser.decided  # the daemon's log tick
    agg.feed(APACHE[:10])
    assert parser.chosen == "combined"
    assert advisor.finish() == ("5 of the first 5 lines are malformed for format combined, and no format detected "
                                "parses them: set `format: nginx` or `apache` with the server's `log_format`")
    final = FormatAdvisor(AUTO, make_parser(AUTO))
    final.feed([b"junk"])
    assert final.finish(final=True) is None and final.format_name() == "tsv"  # --once: settled, and said


def test_a_catch_up_workers_copy_detects_quietly() -> None:
    said: list[tuple[str, int, int]] = []
    parser = make_parser(AUTO, on_detect=lambda *args: said.append(args))
    assert isinstance(parser, AutoParser)
    copy = parser.quiet()
    copy.choose(TSV)
    assert copy.chosen == "tsv" and said == [] and not parser.decided
