"""Checks every streaming test gets for free: no leftover task, asyncio reports nothing."""

from tests.hygiene import asyncio_reports_nothing, no_leftover_tasks

__all__ = ["asyncio_reports_nothing", "no_leftover_tasks"]
