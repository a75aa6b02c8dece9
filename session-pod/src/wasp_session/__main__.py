"""Entry point: ``python -m wasp_session`` and the ``wasp-session`` command."""

from wasp_session import early_signals

early_signals.latch()  # before the heavy imports: a SIGTERM now is not lost

from wasp_session.cli import main  # noqa: E402 - after the latch, on purpose

if __name__ == "__main__":
    main()
