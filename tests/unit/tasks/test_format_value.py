"""Eval/training formats as a value type: one parser, no name decoding at the call sites."""

import pytest

from instructkit.data.tasks.formats import FORMATS, Format


def test_every_format_parses_to_its_parts():
    got = {f: (Format.parse(f).few_shot, Format.parse(f).cot) for f in FORMATS}
    assert got == {"zero_shot": (False, False), "few_shot": (True, False), "zero_shot_cot": (False, True),
                   "few_shot_cot": (True, True)}
    assert Format.parse(Format.parse("few_shot")) == Format.parse("few_shot")
    assert str(Format.parse("zero_shot_cot")) == "zero_shot_cot"


def test_unknown_format_is_an_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="'few_shots' is not one of zero_shot, few_shot"):
        Format.parse("few_shots")
