"""Checks every core test gets for free: no task outlives its test, asyncio reports nothing."""

from tests.hygiene import asyncio_reports_nothing, no_leftover_tasks

__all__ = ["asyncio_reports_nothing", "no_leftover_tasks"]
