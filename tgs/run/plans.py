"""`PlanStore`: a budgeted run's plan (RUN/plan.json) and each fold's refits of it
(RUN/foldK/plan.json), read and written as records. `Run.plans` is the run's store."""

from __future__ import annotations

from tgs.core import commands
from tgs.run.layout import RunPaths
from tgs.run.records import FoldRefit, FoldRefits, Plan


class PlanStore:
    """The plan of a run and its folds' refits (see `tgs.budget.plan`)."""

    def __init__(self, paths: RunPaths):
        self.paths = paths

    def plan(self) -> Plan | None:
        """The run's plan (None without a budget, or before it is made)."""
        path = self.paths.plan
        return Plan.read(path) if path.is_file() else None

    def write_plan(self, plan: Plan) -> None:
        plan.write(self.paths.plan)

    def refits(self, k: int) -> list[FoldRefit]:
        """Fold `k`'s refits of the plan, oldest first ([] before its first)."""
        path = self.paths.fold(k).refits
        if not path.is_file():
            return []
        return list(FoldRefits.read(path, str(commands.train_fold(self.paths.root, k))).refits)

    def write_refits(self, k: int, refits: list[FoldRefit]) -> None:
        """Save fold `k`'s refits (oldest first): the file holds the latest, which sets the
        fold's schedule, with the earlier ones nested under "previous"."""
        FoldRefits(tuple(refits)).write(self.paths.fold(k).refits)

    def schedule(self, k: int) -> Plan | FoldRefit | None:
        """What lays out fold `k`'s epochs: its latest refit, else the run's plan (None
        without a budget)."""
        refits = self.refits(k)
        return refits[-1] if refits else self.plan()
