"""Persistence: the database engine, sessions and migrations."""

from bot.store.db import Store

__all__ = ["Store"]
