"""The command line's own value checks, as a user meets them: one line each, the same wording for every
bad value, and only what the help says is accepted."""

from __future__ import annotations

import argparse

import pytest

from exporter.__main__ import build_parser, parse_connections


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "\u0661\u0660", "\uff15", "-1", "1e3", "0x10", "+5", ""])
def test_max_connections_takes_plain_digits_only(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be a whole number from 0 \(automatic\) to 1000000"):
        parse_connections(value)


def test_max_connections_bad_value_is_the_documented_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--web.max-connections", "\u00b2"])
    err = capsys.readouterr().err
    assert "must be a whole number from 0 (automatic) to 1000000" in err and "parse_connections" not in err


@pytest.mark.parametrize("value, expected", [("0", 0), ("64", 64), (" 5 ", 5), ("1000000", 1_000_000)])
def test_max_connections_good_values(value: str, expected: int) -> None:
    assert parse_connections(value) == expected


def test_two_thousand_unknown_flags_make_one_short_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([f"--x{index}\x1b[2J" for index in range(2_000)])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 1000 and "\x1b" not in err
    assert "unrecognized arguments: --x0\\x1b[2J" in err
