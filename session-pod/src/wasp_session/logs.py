"""Logging for the session pod: structlog everywhere, stdlib loggers routed through it.

Owns the one-time configuration of structlog and of the root stdlib logger
(neonize's ``neonize.*``, ``whatsmeow.*`` and ``Whatsmeow.Database`` loggers
end up in the same stream with the same fields). JSON when stderr is not a
terminal, pretty on one (``WASP_LOG_FORMAT`` overrides). Every line carries
``tenant``: it is added by a processor, not by context variables, because
threads do not inherit those. Phone numbers are masked in every line, ours
and foreign (``wasp.redaction.mask_log_fields``).

neonize calls ``logging.basicConfig`` when imported; ``configure_logging``
replaces the root handlers (``force``) so calling it again after the import
restores ours.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from wasp.redaction import mask_log_fields

# whatsmeow's chatty loggers: INFO from them is noise in a cluster.
_QUIET_LOGGERS = ("Whatsmeow.Database", "whatsmeow.Database")


def _renderer(log_format: str) -> Processor:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    if use_json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer()


def configure_logging(tenant: str | None, log_format: str = "auto") -> None:
    """Route structlog and the stdlib's root logger to stderr in one format."""

    def add_tenant(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        if tenant is not None:
            event_dict.setdefault("tenant", tenant)
        return event_dict

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_tenant,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            mask_log_fields,  # last, on every line and traceback: country code and 2 digits only
            _renderer(log_format),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:  # noqa: ANN401 - log fields
    """A structlog logger named ``name`` with ``context`` bound."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name).bind(**context)
    return logger
