"""Codes and templates: what is allowed, what is refused, the text they make."""

import pytest

from wasp import (
    DEFAULT_TEMPLATE,
    InvalidCodeError,
    InvalidTemplateError,
    render_message,
    validate_code,
    validate_template,
)


def test_the_default_template_says_the_code_and_the_minutes() -> None:
    assert render_message(DEFAULT_TEMPLATE, "493817", 300) == (
        "Your code is 493817. It expires in 5 minutes."
    )


def test_minutes_round_up_and_braces_can_be_escaped() -> None:
    assert render_message("{{x}} {code} {minutes} {code}", "AB12", 61) == "{x} AB12 2 AB12"
    assert render_message("{code}/{minutes}", "AB12", 5) == "AB12/1"


@pytest.mark.parametrize("code", ["1234", "ABCDEF", "a1b2c3d4e5"])
def test_codes_of_4_to_10_letters_or_digits_are_accepted(code: str) -> None:
    assert validate_code(code) == code


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("", "empty"),
        ("123", "4 to 10"),
        ("12345678901", "4 to 10"),
        ("12 34", "letters and digits"),
        ("\uff11\uff12\uff13\uff14", "letters and digits"),  # full-width digits
        ("12{}4", "letters and digits"),
        (123456, "must be a string"),
    ],
)
def test_other_codes_are_refused(code: object, says: str) -> None:
    with pytest.raises(InvalidCodeError, match=says):
        validate_code(code)


@pytest.mark.parametrize(
    "template",
    [
        "{code.__class__}",
        "{code.__class__.__mro__[1].__subclasses__()}",
        "{code[0]}",
        "{0}",
        "{}",
        "{code!r}",
        "{code:>100}",
        "{secret} {code}",
        "{minutes}",
        "unbalanced {code",
        "stray } {code}",
        42,
    ],
)
def test_hostile_or_malformed_templates_are_refused(template: object) -> None:
    with pytest.raises(InvalidTemplateError):
        validate_template(template)


def test_a_refused_template_names_what_is_allowed() -> None:
    with pytest.raises(InvalidTemplateError, match=r"only \{code\}, \{minutes\}.*code.__class__"):
        render_message("{code.__class__}", "1234", 60)
