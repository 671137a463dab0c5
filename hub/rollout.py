"""Deployments as an operator asks for them: made from a snapshot and a target, paused, resumed,
approved, retried, rolled back (interface I4). The engine that carries them out is
hub/rollout_engine.py; the view the API shows is hub/rollout_views.py.

Rules:
- A deployment is planned when made: its waves (contracts/rollout_strategy.py, pure), and per
  device the contract the snapshot gives it and its known-good one (the contract of that name it
  runs now, as the plan reads it: hub/plans.py), all stored in one transaction, nothing pushed.
- A device gets every contract the snapshot gives it (issue 12 allows several, their write
  points disjoint): one execution row per (deployment, device, contract), each pushed at its own
  next version (write-ahead), judged on its own contract id and hash, its known-good kept and
  restored on its own (the agent keys its known-goods by content hash and contract name). The
  device counts once: failed if any of its contracts failed (hub/rollout_gate.py
  `device_state`), in its gate and the abort threshold; waves and pacing are per device (all
  its contracts are due together). Rows, not one row with the worst state, because every push,
  verdict and restore is per contract and must be resumable on its own after a crash.
- A device is in one deployment at a time: one still going (or paused, or failed) refuses a new
  one over its devices (409 naming it); complete and rolled-back ones never block.
- Every request is checked against the deployment table (hub/states/rollout.py): an illegal one is
  409 naming the state; each is audited, refusals included.
- Approval is a step: a gate passed under `approval: manual` leaves an `approval` step running
  and the deployment paused; only approve finishes it (resume is for an operator's pause).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from contracts.errors import ContractInvalid, Issue
from contracts.fleet_binding import parse_selector
from contracts.rollout_strategy import parse_strategy, plan_waves
from contracts.types import EpochMs
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub.fleet import Fleet
from hub.plans import Planner
from hub.refusals import RequestRefused
from hub.rollout_gate import parse_health
from hub.rollout_views import ViewCache
from hub.states import (RESUME_EVENTS, DeploymentEvent, DeploymentState, ExecutionState,
                        IllegalTransition, transition)
from hub.store import HubStore, NotFound
from hub.store.deployments import DeploymentRecord, ExecutionRecord, StepRecord

_D, _E = DeploymentState, DeploymentEvent
APPROVAL = "approval"
_HOLDING = [s for s in DeploymentState if not s.terminal]


class DeploymentInvalid(RequestRefused):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class DeploymentConflict(RequestRefused):
    status = HTTPStatus.CONFLICT


def _invalid(exc: ContractInvalid) -> DeploymentInvalid:
    return DeploymentInvalid(f"deployment is invalid: {exc}"[:1000], exc.issues)


def _target_selector(doc: Any) -> Any:
    """I4's target ({site, labels, devices}, all AND-ed) as a fleet selector."""
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping) or set(doc) - {"site", "labels", "devices"}:
        raise ContractInvalid([Issue(path="target", reason="must be an object of site, labels "
                                                           "and devices")])
    sel: dict[str, Any] = {k: doc[k] for k in ("labels", "devices") if k in doc}
    if "site" in doc:
        if not isinstance(doc["site"], str):
            raise ContractInvalid([Issue(path="target.site", reason="must be a site id")])
        sel["sites"] = [doc["site"]]
    return parse_selector(sel, "target")


class Deployments:
    """The API side's deployments (one per app, over the API's store connection)."""

    def __init__(self, store: HubStore, fleet: Fleet, planner: Planner,
                 clock: Callable[[], EpochMs], wake: Callable[[], None] = lambda: None) -> None:
        self.store, self.fleet, self.planner, self.clock = store, fleet, planner, clock
        self.wake = wake  # tells the engine there is work (hub/rollout_engine.py)
        self.views = ViewCache(store)  # what the API shows, kept until a deployment changes

    def _audit(self, actor: str, outcome: Outcome, dep: str | None, what: str,
               reason: str | None = None, **detail: Any) -> None:
        entry = AuditEntry(ts_ms=self.clock(), actor=actor, action=AuditAction.DEPLOY,
                           outcome=outcome, reason=reason,
                           detail={"deployment": dep, "request": what, **detail})
        self.store.audit.add(entry)
        log_entry(entry)

    # -- create ---------------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any], actor: str) -> DeploymentRecord:
        """Plan and store a deployment. Raises DeploymentInvalid (422, naming the field), or
        DeploymentConflict (409) when one of its devices is in a deployment still going."""
        try:
            rec, devices = self._plan(body, actor)
        except ContractInvalid as exc:
            self._audit(actor, Outcome.REFUSED, None, "create", "invalid",
                        issues=[str(i) for i in exc.issues[:50]])
            raise _invalid(exc) from exc
        self._check_overlap(rec, devices, actor)
        rec = self.store.deployments.create(rec, devices)
        self._audit(actor, Outcome.OK, rec.id, "create", snapshot=rec.snapshot,
                    target=dict(rec.target), devices=sorted(d.device for d in devices)[:1000],
                    waves=len(rec.waves), strategy=dict(rec.strategy))
        self.wake()
        return rec

    def _check_overlap(self, rec: DeploymentRecord, devices: list[ExecutionRecord],
                       actor: str) -> None:
        """One deployment at a time per device: two would push over each other. Only the
        deployments still going (or paused, or failed mid-rollback) hold their devices; a
        complete or rolled-back one never blocks a later one."""
        mine = {d.device for d in devices}
        for other in self.store.deployments.find(states=_HOLDING):
            shared = sorted(mine & {d for w in other.waves for d in w["devices"]})
            if shared:
                why = (f"devices {', '.join(shared[:10])} are in deployment {other.id} "
                       f"({other.state.value}); finish or roll it back first")
                self._audit(actor, Outcome.REFUSED, None, "create", why, other=other.id)
                raise DeploymentConflict(why, [Issue(path="target", reason=why)])

    def _plan(self, body: Mapping[str, Any],
              actor: str) -> tuple[DeploymentRecord, list[ExecutionRecord]]:
        sid = body.get("snapshot")
        if not isinstance(sid, str) or not sid:
            raise ContractInvalid([Issue(path="snapshot", reason="must be a snapshot id")])
        extra = sorted(set(body) - {"snapshot", "target", "strategy", "health"}, key=str)
        if extra:
            raise ContractInvalid([Issue(path=str(extra[0])[:40], reason="unknown key")])
        try:
            self.store.fleet.snapshot(sid)
        except NotFound:
            raise ContractInvalid([Issue(path="snapshot", reason=f"no snapshot {sid[:80]!r}")]) \
                from None
        selector = _target_selector(body.get("target"))
        strategy = parse_strategy(body.get("strategy"))
        health_doc = body.get("health") or {}
        if not isinstance(health_doc, Mapping):
            raise ContractInvalid([Issue(path="health", reason="must be an object")])
        parse_health(health_doc)
        plan = self.planner.plan(sid, selector)
        rows = self._rows(plan["devices"])
        waves = plan_waves(strategy, rows)
        now = self.clock()
        wave_of = {d: w.index for w in waves for d in w.devices}
        devices = [ExecutionRecord(deployment="", device=d, wave=wave_of[d],
                                   state=ExecutionState.QUEUED, contract=row["contract"],
                                   known_good=self._known_good(row), updated_ms=now)
                   for d, mine in rows.items() for row in mine]
        rec = DeploymentRecord(
            id="", snapshot=sid, target=dict(body.get("target") or {}),
            strategy=strategy.to_mapping(), health=dict(health_doc), state=_D.PLANNED,
            waves=[{"index": w.index, "kind": w.kind, "devices": list(w.devices),
                    "rate_per_min": w.rate_per_min} for w in waves],
            actor=actor, created_ms=now, updated_ms=now)
        return rec, devices

    def _rows(self, rows: list[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
        """Each device's plan rows, one per contract the snapshot gives it (issue 12 checked
        their write points disjoint); a device the snapshot cannot compile for is an issue."""
        out: dict[str, list[Mapping[str, Any]]] = {}
        issues = []
        for r in rows:
            if r["would_get"] is None:
                why = "; ".join(i["detail"] for i in r["ineligible"]) or "no contract"
                issues.append(Issue(path=f"target.devices.{r['device']}", reason=why[:300]))
            elif any(o["contract"] == r["contract"] for o in out.get(r["device"], ())):
                issues.append(Issue(path=f"target.devices.{r['device']}", reason="the snapshot "
                                    f"gives it contract {r['contract']} twice"))
            else:
                out.setdefault(r["device"], []).append(r)
        if issues:
            raise ContractInvalid(issues)
        return out

    def _known_good(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        cid = row["current"]["same_contract"]
        if cid is None:
            return None
        return {"contract": cid, "hash": self.store.contracts.get(cid).content_hash}

    # -- operator requests ----------------------------------------------------------------------
    def _check(self, rec: DeploymentRecord, event: DeploymentEvent, actor: str,
               what: str) -> None:
        try:
            transition(rec.state, event)
        except IllegalTransition as exc:
            self._refuse(rec, actor, what, f"deployment {rec.id} is {rec.state.value}: {what} "
                                           f"is not allowed ({exc})")

    def _refuse(self, rec: DeploymentRecord, actor: str, what: str, why: str) -> None:
        self._audit(actor, Outcome.REFUSED, rec.id, what, why, state=rec.state.value)
        raise DeploymentConflict(why, [Issue(path="state", reason=why)])

    def _awaiting_approval(self, dep: str) -> StepRecord | None:
        step = self.store.deployments.current_step(dep)
        return step if step and step.name.endswith(APPROVAL) and step.status == "running" else None

    def pause(self, dep: str, actor: str) -> DeploymentRecord:
        rec = self.store.deployments.get(dep)
        self._check(rec, _E.PAUSE, actor, "pause")
        after = self.store.deployments.write(dep, self.clock(), event=_E.PAUSE,
                                             reason=f"paused by {actor}", resume_to=rec.state)
        self._audit(actor, Outcome.OK, dep, "pause", was=rec.state.value)
        return after

    def resume(self, dep: str, actor: str) -> DeploymentRecord:
        rec = self.store.deployments.get(dep)
        if rec.state is _D.PAUSED and self._awaiting_approval(dep):
            self._refuse(rec, actor, "resume", f"deployment {dep} is paused for an approval: "
                                               "approve it")
        return self._go_on(rec, actor, "resume", None)

    def approve(self, dep: str, actor: str) -> DeploymentRecord:
        rec = self.store.deployments.get(dep)
        step = self._awaiting_approval(dep)
        if rec.state is not _D.PAUSED or step is None:
            self._refuse(rec, actor, "approve", f"deployment {dep} is {rec.state.value}: no "
                                                "gate is waiting for an approval")
        assert step is not None
        done = StepRecord(**{**step.__dict__, "status": "done", "finished_ms": self.clock(),
                             "actor": actor, "result": {"approved_by": actor}})
        return self._go_on(rec, actor, "approve", done)

    def _go_on(self, rec: DeploymentRecord, actor: str, what: str,
               step: StepRecord | None) -> DeploymentRecord:
        if rec.state is not _D.PAUSED or rec.resume_to not in RESUME_EVENTS:
            self._refuse(rec, actor, what, f"deployment {rec.id} is {rec.state.value}: only a "
                                           f"paused deployment can {what}")
        assert rec.resume_to is not None
        after = self.store.deployments.write(rec.id, self.clock(),
                                             event=RESUME_EVENTS[rec.resume_to],
                                             reason=f"{what} by {actor}", step=step,
                                             resume_to=None)
        self._audit(actor, Outcome.OK, rec.id, what, to=after.state.value)
        self.wake()
        return after

    def retry(self, dep: str, actor: str) -> DeploymentRecord:
        """Run the failed step again (attempts + 1); its pushes that happened are not repeated
        (hub/rollout_push.py). Raises DeploymentConflict when no step failed."""
        rec = self.store.deployments.get(dep)
        step = self.store.deployments.current_step(dep)
        if step is None or step.status != "failed":
            self._refuse(rec, actor, "retry", f"deployment {dep} is {rec.state.value}: no "
                                              "failed step to retry")
        assert step is not None
        again = StepRecord(**{**step.__dict__, "status": "running", "actor": actor,
                              "attempts": step.attempts + 1, "finished_ms": None})
        event = _E.RETRY if rec.state is _D.FAILED else None
        after = self.store.deployments.write(dep, self.clock(), event=event, step=again,
                                             reason=f"retry by {actor}")
        self._audit(actor, Outcome.OK, dep, "retry", step=step.name, attempts=again.attempts)
        self.wake()
        return after

    def rollback(self, dep: str, actor: str, reason: str) -> DeploymentRecord:
        rec = self.store.deployments.get(dep)
        self._check(rec, _E.ROLLBACK, actor, "rollback")
        why: dict[str, Any] = {"initiated_by": f"operator:{actor}", "gate": None, "devices": [], "evidence": [],
               "ts_ms": self.clock(), "reason": reason}
        after = self.store.deployments.write(dep, self.clock(), event=_E.ROLLBACK,
                                             reason=f"rollback by {actor}: {reason}"[:500],
                                             rollback=why, resume_to=None)
        self._audit(actor, Outcome.OK, dep, "rollback", reason, to=after.state.value)
        self.wake()
        return after
