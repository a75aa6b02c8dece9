"""The library's public face: exactly these names, one error root."""

import wasp


def test_the_public_names_are_exactly_these() -> None:
    assert wasp.__all__ == [
        "DEFAULT_TEMPLATE",
        "DEFAULT_TTL_SECONDS",
        "EventsLostError",
        "FailureReason",
        "InvalidCodeError",
        "InvalidMessageIdError",
        "InvalidNumberError",
        "InvalidTemplateError",
        "MessageNotFoundError",
        "MessageState",
        "MessageStatus",
        "SessionNotFoundError",
        "SessionStatus",
        "StreamEvent",
        "WaitTimeoutError",
        "WaspClient",
        "WaspError",
        "__version__",
        "normalize_phone",
        "render_message",
        "validate_code",
        "validate_template",
    ]
    assert wasp.__all__ == sorted(wasp.__all__)
    for name in wasp.__all__:
        assert hasattr(wasp, name), name


def test_every_library_error_derives_from_one_root() -> None:
    for name in wasp.__all__:
        value = getattr(wasp, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, wasp.WaspError), name
