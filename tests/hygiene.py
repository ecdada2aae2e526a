"""Asyncio hygiene checks shared by the test folders that opt in from their conftest.py:
no task outlives its test, and asyncio logs no error ("exception was never retrieved",
"Task was destroyed but it is pending!", ...)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator

import pytest


class ErrorRecords(logging.Handler):
    """Collects the error records of the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def asyncio_reports_nothing() -> Iterator[None]:
    """Fail a test after which asyncio logged an error."""
    handler = ErrorRecords()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    try:
        yield
        gc.collect()
    finally:
        asyncio_logger.removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Every task a test starts must be finished when the test and its fixtures are done
    (autouse: set up first, so torn down last)."""
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in leftover:
        task.cancel()
    await asyncio.gather(*leftover, return_exceptions=True)
    assert not leftover, leftover
