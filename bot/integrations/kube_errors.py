"""The errors of the Kubernetes integration, and the translation of the API server's answers.

Every error is a :class:`ClusterError` whose ``str()`` is a short message fit for a chat reply.
"""

from __future__ import annotations

import yaml
from kubernetes.client.exceptions import ApiException


class ClusterError(Exception):
    """Base of every error of this module; ``str(err)`` is a one-line, user-facing message,
    ``status`` the HTTP status of the API server's answer when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterUnavailable(ClusterError):
    """The API server could not be reached or did not answer within the timeout."""


class NotFound(ClusterError):
    """The named object does not exist."""


class Forbidden(ClusterError):
    """The bot's service account may not do this (see deploy/kubernetes/base/rbac.yaml)."""


class InvalidRequest(ClusterError):
    """The request was refused as invalid (bad name, bad value, conflict)."""


class NotADriver(ClusterError):
    """The pod exists but is not a Spark driver of the platform; it was not touched."""


class MetricsUnavailable(ClusterError):
    """metrics.k8s.io is not served (metrics-server absent or down)."""


class ManifestError(ClusterError):
    """A manifest to apply is unreadable or contains something the bot may not apply."""


def _api_message(exc: ApiException) -> str:
    try:
        message = str(yaml.safe_load(exc.body or "")["message"])
    except (TypeError, KeyError, yaml.YAMLError):
        message = str(exc.reason or "")
    return message[:300]


def translate(exc: ApiException, what: str) -> ClusterError:
    """The :class:`ClusterError` for an error answer of the API server about ``what``."""
    message, code = _api_message(exc), exc.status
    if code == 404:
        return NotFound(f"{what}: not found", code)
    if code in (401, 403):
        return Forbidden(f"{what}: not allowed ({message})", code)
    if code in (400, 409, 422):
        return InvalidRequest(f"{what}: refused ({message})", code)
    if code in (502, 503, 504):
        return ClusterUnavailable(f"{what}: API server unavailable ({code} {message})", code)
    return ClusterError(f"{what}: API server error {code} ({message})", code)


class RollbackRefused(InvalidRequest):
    """A rollback that cannot be done as asked (paused, no previous revision, already
    there); nothing was sent."""
