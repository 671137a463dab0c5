"""Deployment routes (interface I4): make, list, show, and the operator's requests.

Writes need operator or admin (hub/auth.py), reads any token; bodies are JSON capped while
streaming. 201 with the view on create; 409 naming the state for an illegal request; 404 for an
unknown deployment; 422 naming the field for a bad body (hub/rollout.py decides each).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.errors import Issue
from hub import inbound
from hub.rollout import DeploymentInvalid, Deployments

MAX_REQUEST_BYTES = 64 * 1024
"""A deployment request names a snapshot, a selector, canary devices and a health spec."""
MAX_REASON = 500


def deployments_of(request: Request) -> Deployments:
    found: Deployments = request.app.state.deployments
    return found


def _view(request: Request, dep_id: str, status: int = 200) -> Response:
    deps = deployments_of(request)
    rec = deps.store.deployments.get(dep_id)
    return Response(deps.views.body(rec), status_code=status, media_type="application/json",
                    headers={"Location": f"/api/deployments/{rec.id}"} if status == 201 else None)


async def create_deployment(request: Request) -> Response:
    """Plan and start a deployment of a snapshot (operator)."""
    body = await inbound.json_object(request, MAX_REQUEST_BYTES)
    rec = deployments_of(request).create(body, inbound.actor(request))
    return _view(request, rec.id, 201)


async def list_deployments(request: Request) -> Response:
    """Deployments, newest first (without their steps)."""
    deps = deployments_of(request)
    limit = inbound.int_query(request, "limit", inbound.DEFAULT_LIMIT, 1, inbound.MAX_LIMIT)
    rows = b",".join(deps.views.body(r, full=False)
                     for r in deps.store.deployments.find(limit=limit))
    return Response(b'{"deployments":[' + rows + b"]}", media_type="application/json")


async def get_deployment(request: Request) -> Response:
    """One deployment: waves, gates with their evidence, devices, rollback reason, steps."""
    return _view(request, request.path_params["deployment"])


def _operator_request(verb: str, doc: str) -> Callable[[Request], Awaitable[Response]]:
    """The route for one of the operator's bodiless requests: `Deployments.<verb>(id, actor)`,
    then the view. Named `<verb>_deployment` (the route's name, which hub/openapi.py keys on)."""
    async def endpoint(request: Request) -> Response:
        dep = request.path_params["deployment"]
        getattr(deployments_of(request), verb)(dep, inbound.actor(request))
        return _view(request, dep)
    endpoint.__name__ = endpoint.__qualname__ = f"{verb}_deployment"
    endpoint.__doc__ = doc
    return endpoint


pause_deployment = _operator_request("pause", "Pause a deployment where it is (operator).")
resume_deployment = _operator_request(
    "resume", "Resume a paused deployment where it was paused (operator).")
approve_deployment = _operator_request(
    "approve", "Approve the gate a manual deployment waits on: the next wave goes (operator).")
retry_deployment = _operator_request(
    "retry", "Retry the failed step; what it did already is not done again (operator).")


async def rollback_deployment(request: Request) -> Response:
    """Roll a deployment back to each device's known-good contract (operator; reason audited)."""
    dep = request.path_params["deployment"]
    deps = deployments_of(request)
    deps.store.deployments.get(dep)  # 404 before the body is judged
    body = await inbound.json_object(request, MAX_REASON * 4)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise DeploymentInvalid("reason", [Issue(path="reason", reason="a reason is required "
                                                 f"(1..{MAX_REASON} characters)")])
    deps.rollback(dep, inbound.actor(request), reason.strip())
    return _view(request, dep)


ROUTES = (
    Route("/api/deployments", create_deployment, methods=["POST"]),
    Route("/api/deployments", list_deployments, methods=["GET"]),
    Route("/api/deployments/{deployment}", get_deployment, methods=["GET"]),
    Route("/api/deployments/{deployment}/pause", pause_deployment, methods=["POST"]),
    Route("/api/deployments/{deployment}/resume", resume_deployment, methods=["POST"]),
    Route("/api/deployments/{deployment}/approve", approve_deployment, methods=["POST"]),
    Route("/api/deployments/{deployment}/retry", retry_deployment, methods=["POST"]),
    Route("/api/deployments/{deployment}/rollback", rollback_deployment, methods=["POST"]),
)
