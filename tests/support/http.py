"""Small HTTP helpers for tests that run the bot's server on loopback."""

from __future__ import annotations

import asyncio
import time

import aiohttp


async def wait_healthy(base_url: str, timeout: float = 5.0) -> None:
    """Wait until ``GET /healthz`` answers 200; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{base_url}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{base_url}/healthz did not answer in {timeout}s")
            await asyncio.sleep(0.02)
