"""UTC rules shared by entities and the table scanner: coerce, reject, describe zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["NaiveDatetimeError", "to_utc", "utcnow", "zone_name"]


class NaiveDatetimeError(ValueError):
    """A naive datetime reached an entity in strict mode (`entity.timestamps.naive`)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime, *, strict: bool = False, field: str = "timestamp") -> datetime:
    """`value` as an aware UTC datetime: naive ones are taken as UTC (or rejected when
    `strict`), other zones are converted to the same instant in UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        if strict:
            raise NaiveDatetimeError(f"{field} is naive ({value.isoformat()}); pass an aware "
                                     "datetime, e.g. datetime.now(UTC) (entity.timestamps.naive)")
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def zone_name(value: datetime) -> str:
    """'naive', 'UTC', or the zone's name/offset, for inspection output."""
    if value.tzinfo is None or value.utcoffset() is None:
        return "naive"
    if value.utcoffset() == timedelta(0) and value.tzname() in ("UTC", "Z", None):
        return "UTC"
    return value.tzname() or str(value.utcoffset())
