"""Phone numbers as the client and the worker normalise them."""

import pytest

from wasp import InvalidNumberError, normalize_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+49 151 12345678", None, "+4915112345678"),
        ("015112345678", "DE", "+4915112345678"),
        ("0151 1234 5678", "de", "+4915112345678"),
        ("0049 151 12345678", "DE", "+4915112345678"),
        ("(202) 555-0143", "US", "+12025550143"),
        ("+4915112345678", "US", "+4915112345678"),
    ],
)
def test_numbers_are_normalised_to_e164_with_the_default_region(
    raw: str, region: str | None, expected: str
) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "says"),
    [
        ("", "DE", "empty"),
        ("hello", "DE", "cannot be parsed"),
        ("+49 1", "DE", "too short"),
        ("12345", "DE", "not a valid number"),
        ("015112345678", None, "no country code"),
        ("015112345678", "XX", "unknown default region"),
    ],
)
def test_invalid_numbers_are_refused_with_a_clear_reason(
    raw: str, region: str | None, says: str
) -> None:
    with pytest.raises(InvalidNumberError, match=says):
        normalize_phone(raw, region)
