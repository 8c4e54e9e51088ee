"""Late work: due dates and a late policy, applied when grades are reported (raw score kept).

Policies (``[late]`` in ``autograder/term.toml`` or ``xlt-course export --late-policy``):

- ``none``: lateness is ignored (the default);
- ``flag``: the score is unchanged, the submission is marked late in the report;
- ``per_day``: each started day after the due date (after ``grace_minutes``) takes
  ``per_day`` of the raw score, and the score never drops below ``floor`` of the raw score.

A submission is late when its time (from intake) is after the lesson's due date, or,
when its time is unknown, when the LMS marked it late; without a time (Canvas's file
names carry none) or a due date no penalty can be computed: ``per_day`` marks the result
``unknown`` and the export leaves that score blank for the instructor to decide.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from xlt_course.errors import XltCourseError

PolicyName = Literal["none", "flag", "per_day"]
POLICIES: tuple[str, ...] = ("none", "flag", "per_day")


class LateError(XltCourseError, ValueError):
    """A due date or a late policy setting is malformed."""


def parse_due(text: str) -> datetime:
    """Return a due date as an aware UTC datetime.

    Accepts ``YYYY-MM-DD`` (the end of that day, 23:59:59) and ``YYYY-MM-DDTHH:MM[:SS]``
    with an optional offset (``+02:00``, ``Z``); a time without offset is UTC.

    Raises:
        LateError: any other format (one line naming the accepted ones).
    """
    t = str(text).strip()
    ok = re.fullmatch(
        r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?(?:Z|[+-]\d\d:?\d\d)?)?", t, re.IGNORECASE
    )
    try:
        if not ok:
            raise ValueError
        dt = datetime.fromisoformat(t.upper().replace("Z", "+00:00"))
    except ValueError:
        raise LateError(
            f"due date {text!r} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from None
    if len(t) == 10:
        dt = dt.replace(hour=23, minute=59, second=59)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


@dataclass(frozen=True)
class LatePolicy:
    """Due dates and what lateness costs.

    Attributes:
        policy: ``none``, ``flag`` or ``per_day``.
        due: lesson id -> due date (``"*"``: every other lesson).
        per_day: fraction of the raw score taken per started day late (``per_day``).
        floor: fraction of the raw score a late submission keeps at least (``per_day``).
        grace_minutes: minutes after the due date that still count as on time.
    """

    policy: PolicyName = "none"
    due: dict[str, datetime] = field(default_factory=dict)
    per_day: float = 0.0
    floor: float = 0.0
    grace_minutes: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise LateError(f"late policy {self.policy!r} is not one of {', '.join(POLICIES)}")
        if not 0 <= self.per_day <= 1 or not 0 <= self.floor <= 1:
            raise LateError("per_day and floor are fractions of the raw score, between 0 and 1")
        if self.grace_minutes < 0:
            raise LateError("grace_minutes must be >= 0")

    def due_of(self, lesson: str) -> datetime | None:
        """Return the due date of ``lesson`` (None: no due date)."""
        return self.due.get(lesson, self.due.get("*"))


def policy_from_config(config: dict[str, Any], **override: Any) -> LatePolicy:
    """Return the :class:`LatePolicy` of ``[late]`` in the term config, with CLI overrides.

    ``[late]`` keys: ``policy``, ``per_day``, ``floor``, ``grace_minutes`` and a ``due``
    table (lesson id or ``"*"`` -> date). Overrides with value None are ignored; ``due``
    given as a string applies to every lesson.
    """
    cfg = dict(config.get("late", {}))
    cfg.update({k: v for k, v in override.items() if v is not None})
    due = cfg.get("due", {})
    if isinstance(due, str):
        due = {"*": due}
    if not isinstance(due, dict):
        raise LateError('[late] due must be a table: lesson id (or "*") -> date')
    unknown = set(cfg) - {"policy", "per_day", "floor", "grace_minutes", "due"}
    if unknown:
        raise LateError(f"[late] has unknown keys: {', '.join(sorted(unknown))}")
    try:
        return LatePolicy(
            policy=cfg.get("policy", "none"),
            due={k: parse_due(v) for k, v in due.items()},
            per_day=float(cfg.get("per_day", 0.0)),
            floor=float(cfg.get("floor", 0.0)),
            grace_minutes=float(cfg.get("grace_minutes", 0.0)),
        )
    except (TypeError, ValueError) as e:
        if isinstance(e, LateError):
            raise
        raise LateError(f"[late]: {e}") from e


@dataclass(frozen=True)
class LateResult:
    """What the policy made of one submission."""

    late: bool
    days: int
    score: float
    note: str = ""
    unknown: bool = False
    """A penalty applies but cannot be computed (no time or due date): ``score`` is raw."""


def apply_late(
    policy: LatePolicy, lesson: str, raw: float, submitted_at: str, lms_late: bool
) -> LateResult:
    """Return the reported score of a submission scored ``raw`` (the raw score is not changed).

    Args:
        policy: the late policy.
        lesson: the lesson id (for its due date).
        raw: the autograder's score.
        submitted_at: ISO 8601 submission time ("" when unknown).
        lms_late: the LMS marked the submission late.
    """
    if policy.policy == "none":
        return LateResult(False, 0, raw)
    due = policy.due_of(lesson)
    when = datetime.fromisoformat(submitted_at) if submitted_at else None
    if due is not None and when is not None:
        over = when - due - timedelta(minutes=policy.grace_minutes)
        days = math.ceil(over.total_seconds() / 86400) if over.total_seconds() > 0 else 0
        if days == 0:
            return LateResult(False, 0, raw)
        if policy.policy == "flag":
            return LateResult(True, days, raw, f"late by {days} day(s)")
        keep = max(policy.floor, 1.0 - policy.per_day * days)
        score = round(raw * keep, 4)
        return LateResult(
            True, days, score, f"late by {days} day(s): {raw:g} -> {score:g} ({keep:.0%} kept)"
        )
    if lms_late:
        why = "no due date set" if due is None else "no submission time"
        if policy.policy == "per_day":
            return LateResult(
                True, 0, raw, f"marked late by the LMS ({why}: penalty unknown)", True
            )
        return LateResult(True, 0, raw, f"marked late by the LMS ({why}: no penalty applied)")
    return LateResult(False, 0, raw)
