"""One log pipeline per process: structlog and stdlib records (grpc, asyncio, sqlalchemy) come out in
the same format, with the per-request context (request_id, tenant, subject, method) merged in.

Call `configure_logging` once at process start; calling it again replaces the previous setup, so tests
and the launcher can reconfigure freely.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_HANDLER_NAME = "muster"
"""Name of the root handler we install, so a second call replaces it instead of adding another."""

FORMATS = ("json", "console")


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning, error or critical")
    return number


def _service_adder(service: str) -> Processor:
    def add_service(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _shared_processors() -> list[Processor]:
    """Run for structlog and stdlib records alike, before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _traceback_formatter() -> structlog.typing.ExceptionRenderer:
    if importlib.util.find_spec("rich") is None:  # rich is optional
        return structlog.dev.plain_traceback
    return structlog.dev.RichTracebackFormatter(show_locals=False)


def configure_logging(service: str, level: str, fmt: str) -> None:
    """Route structlog and stdlib logging through one handler on stdout.

    `fmt` is "json" (one object per line, for machines) or "console" (coloured, for people).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use 'json' or 'console'")
    level_number = _level_number(level)

    renderer: Processor
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                              _service_adder(service)]
    if fmt == "json":
        # Tracebacks as a string field keep each record on one line.
        final.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        # No locals in tracebacks: they would print tokens and request payloads.
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=_traceback_formatter())
    final.append(renderer)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=final,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level_number)
    logging.captureWarnings(True)

    # structlog's own records skip the stdlib machinery (a level check by integer comparison, one
    # write per line): the access log writes one line per RPC, so this is the hot path.
    structlog.configure(
        processors=[
            *_shared_processors(),
            *final[1:],
        ],
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        cache_logger_on_first_use=False,  # so structlog.testing.capture_logs works after configure
    )


def get_logger(name: str, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named like a stdlib one (so levels can be tuned per module)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger
