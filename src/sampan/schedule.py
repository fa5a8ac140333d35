"""`modal.schedule`: Modal's module path for `Cron`, `Period` and `Schedule`."""

from .sdk.schedule import Cron, Period, Schedule

__all__ = ["Cron", "Period", "Schedule"]
