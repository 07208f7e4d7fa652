"""Every mistake of a configuration file at once: the schema, section by section (one
bad section never hides another's errors), the cross-field rules and the references
(an escalation's ``to``, a chain step's ``role``, the rotation's members, ``roles:``),
each with its key path, in words that say what to write instead.

:func:`check` returns the :class:`~bot.settings.Config` built from the sections that
validated, the errors and the warnings (allowed but risky: someone who is paged but
has neither a Slack nor a Telegram id). :func:`bot.settings.load_config` calls it.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from bot.domain.durations import format_duration
from bot.settings_fields import ROLE_NAMES, severity_key

if TYPE_CHECKING:
    from bot.settings import Config

ON_CALL_ROLES = ("primary", "secondary")


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    """`` — did you mean 'cto'?`` when ``name`` is close to one of ``valid``."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose keys are expected at ``loc`` (for an unknown key's suggestion)."""
    from bot.settings import Config

    current: Any = Config
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        args = typing.get_args(current)
        origin = typing.get_origin(current)
        if origin is tuple and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` and ``Annotated[X, …]`` → ``X``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before"))


def friendly(err: Any) -> str:
    """One pydantic error → ``key.path: what to write instead``."""
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    where = _path(loc) or "(top level)"
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    you = f" (not {_shown(given)})"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        hint = suggest(str(loc[-1]), model.model_fields) if model else ""
        return f"{where}: unknown key{hint}"
    if kind in ("tuple_type", "list_type", "set_type"):
        msg = f"write a list, e.g. [a, b]{you}"
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        msg = f"write a whole number{you}"
    elif kind in ("float_parsing", "float_type", "finite_number"):
        msg = f"write a number{you}"
    elif kind in ("string_type", "string_sub_type"):
        msg = f"write text (in quotes if it looks like something else){you}"
    elif kind in ("bool_parsing", "bool_type"):
        msg = f"write true or false{you}"
    elif kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        msg = f"write a mapping of keys (key: value){you}"
    elif kind == "missing":
        msg = "missing: this key is required"
    elif kind == "literal_error":
        msg = f"use {ctx.get('expected', 'one of the allowed values')}{you}"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": ("at least", "ge"),
            "greater_than": ("above", "gt"),
            "less_than_equal": ("at most", "le"),
            "less_than": ("below", "lt"),
        }[kind]
        msg = f"must be {words[0]} {ctx.get(words[1])}{you}"
    elif kind.startswith("date") or kind.startswith("datetime"):
        msg = f"write a date as YYYY-MM-DD{you}"
    elif kind in ("value_error", "assertion_error"):
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    else:
        msg = str(err["msg"]).replace("Input should be", "write")
    return f"{where}: {msg}"


def _errors_of(data: dict[str, Any]) -> list[str]:
    from bot.settings import Config

    try:
        Config.model_validate(data)
    except ValidationError as exc:
        return [friendly(err) for err in exc.errors()]
    return []


def check(data: dict[Any, Any]) -> tuple[Config, list[str], list[str]]:
    """``(config of the sections that validated, errors, warnings)`` of a parsed file."""
    from bot.settings import Config

    errors: list[str] = []
    good: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key not in Config.model_fields:
            errors.append(f"{key}: unknown key{suggest(key, Config.model_fields)}")
            continue
        if key == "severities" and isinstance(value, dict):
            ok: dict[Any, Any] = {}
            for sev, policy in value.items():
                try:
                    severity_key(sev)
                except ValueError:
                    errors.append(f"severities.{sev}: unknown severity (use P0, P1, P2 or P3)")
                    continue
                found = _errors_of({key: {sev: policy}})
                errors.extend(found)
                if not found:
                    ok[sev] = policy
            good[key] = ok
            continue
        found = _errors_of({key: value})
        errors.extend(found)
        if not found:
            good[key] = value
    try:
        config = Config.model_validate(good)
    except ValidationError as exc:  # sections that only fail together: say so, never crash
        errors.extend(friendly(err) for err in exc.errors())
        config = Config()
    errors.extend(_cross(data))
    errors.extend(_references(data))
    return config, errors, _unreachable(data)


def _part(model: type[BaseModel], data: Any, *path: str) -> Any:
    """The model at ``path`` of the raw data, validated alone (None: absent or invalid:
    its own errors are already listed)."""
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _cross(data: dict[Any, Any]) -> list[str]:
    """Rules between keys, checked on whatever of them validated on its own."""
    from bot.settings import Executors, Pir

    errors = []
    executors = _part(Executors, data, "cluster", "executors")
    if executors is not None and executors.min > executors.max:
        errors.append(
            f"cluster.executors.min: {executors.min} is above cluster.executors.max "
            f"({executors.max}): write a min no larger than the max"
        )
    pir = data.get("pir")
    window = (
        _part(Pir, {k: v for k, v in pir.items() if k in ("rest", "within")})
        if isinstance(pir, dict)
        else None
    )
    if window is not None and window.rest >= window.within:
        errors.append(
            "pir.rest: must be shorter than pir.within "
            f"({format_duration(window.rest)} is not shorter than {format_duration(window.within)})"
        )
    business = data.get("business")
    holidays = business.get("holidays") if isinstance(business, dict) else None
    if (
        isinstance(holidays, dict)
        and holidays.get("subdivision") is not None
        and holidays.get("country") is None
    ):
        errors.append(
            "business.holidays.subdivision: a subdivision needs its country "
            "(add business.holidays.country)"
        )
    return errors


def _get(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _name(value: Any) -> str | None:
    return value.strip().lstrip("@") if isinstance(value, str) else None


def targets(data: dict[Any, Any]) -> list[tuple[str, str]]:
    """``(key path, name)`` of every name a page goes to, read from the raw file (a
    section with other errors still has its names checked): chain roles, escalations."""
    from bot.settings_defaults import DEFAULT_CHAIN, DEFAULT_SEVERITIES

    found: list[tuple[str, str]] = []
    chain = _get(data, "oncall", "chain")
    steps = chain if isinstance(chain, list) else [s.model_dump() for s in DEFAULT_CHAIN]
    for i, step in enumerate(steps):
        if (name := _name(_get(step, "role"))) is not None:
            found.append((f"oncall.chain.{i}.role", name))
    given: dict[str, Any] = {}
    raw = data.get("severities")
    for key, policy in raw.items() if isinstance(raw, dict) else ():
        try:
            given[severity_key(key)] = policy
        except ValueError:
            continue
    for sev, default in DEFAULT_SEVERITIES.items():
        policy = given.get(sev)
        escalate = _get(policy, "escalate") if isinstance(policy, dict) else None
        if not (isinstance(policy, dict) and "escalate" in policy):
            escalate = [t.model_dump() for t in default.escalate]
        for i, trigger in enumerate(escalate if isinstance(escalate, list) else ()):
            if (name := _name(_get(trigger, "to"))) is not None:
                found.append((f"severities.{sev}.escalate.{i}.to", name))
    return found


def _people(data: dict[Any, Any]) -> dict[str, Any] | None:
    raw = data.get("people", {})
    if not isinstance(raw, dict):
        return None
    return {str(k).lstrip("@"): (v if isinstance(v, dict) else {}) for k, v in raw.items()}


def _roles(data: dict[Any, Any]) -> dict[str, str]:
    raw = data.get("roles")
    if not isinstance(raw, dict):
        return {}
    return {str(k): n for k, v in raw.items() if (n := _name(v)) is not None}


def _members(data: dict[Any, Any]) -> list[str]:
    members = _get(data, "oncall", "rotation", "members")
    return (
        [m.lstrip("@") for m in members if isinstance(m, str)] if isinstance(members, list) else []
    )


def _references(data: dict[Any, Any]) -> list[str]:
    """Every name must resolve as at runtime (OnCall.who, Directory.resolve_role)."""
    by_name = _people(data)
    if by_name is None:
        return []  # people: is not a mapping, already an error
    people = sorted(by_name)
    known_people = ", ".join(people) or "none configured"
    configured_roles = _roles(data)
    errors: list[str] = []
    roles = list(dict.fromkeys([*ROLE_NAMES, *configured_roles]))
    for where, name in targets(data):
        if name in roles or name in by_name:
            continue  # a role nobody holds yet is allowed: the bot says so when it pages
        errors.append(
            f"{where}: {name!r} is neither a role ({', '.join(roles)}) nor a person "
            f"(people: {known_people}){suggest(name, [*roles, *people])}"
        )
    for i, member in enumerate(_members(data)):
        if member not in by_name:
            errors.append(
                f"oncall.rotation.members.{i}: {member!r} is not in people "
                f"(people: {known_people}){suggest(member, people)}; add them under people:"
            )
    for role, person in configured_roles.items():
        if person not in by_name:
            errors.append(
                f"roles.{role}: {person!r} is not in people (people: {known_people})"
                f"{suggest(person, people)}"
            )
        if role in ON_CALL_ROLES:
            errors.append(
                f"roles.{role}: {role} comes from oncall.rotation, not from roles: remove it here"
            )
    return errors


def _unreachable(data: dict[Any, Any]) -> list[str]:
    """People who would be paged but have neither a Slack nor a Telegram id."""
    by_name = _people(data) or {}
    configured_roles = _roles(data)
    paged: dict[str, str] = {}
    for member in _members(data):
        paged.setdefault(member, "on the rotation")
    for where, name in targets(data):
        person = name if name in by_name else configured_roles.get(name)
        if person is not None and name not in ON_CALL_ROLES:
            paged.setdefault(person, f"paged as {name} ({where})")
    warnings = []
    for key, why in paged.items():
        person = by_name.get(key)
        if person is not None and not person.get("slack") and person.get("telegram") is None:
            warnings.append(
                f"people.{key}: {why} but has neither a slack nor a telegram id: "
                "pages cannot reach them"
            )
    return warnings
