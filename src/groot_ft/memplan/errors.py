"""The plan's user errors, apart from :mod:`.shapes` so that the CLI can name them without importing torch."""

from __future__ import annotations

from groot_ft.errors import UserError


class PlanInputError(UserError, ValueError):
    """A base model or setting the plan cannot use; the message says which and why."""


class PlanUnsupportedError(PlanInputError):
    """A base model of a family the estimator does not model (GR00T N1.7): no plan, said so, the run goes on."""
