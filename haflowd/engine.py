"""The state machine: moves missions through their workflow, one command at a time.

One :class:`Engine` per daemon, and every change of a mission goes through
it (create, artifact saves, continue, cancel, mark-completed), each under
that mission's lock. It talks to the world only through three protocols:
a :class:`~haflowd.sandbox.protocol.SandboxProvider` (where steps run), an
:class:`~haflowd.agents.protocol.AgentAdapter` per agent CLI (what runs),
and a :class:`~haflowd.workspaces.protocol.Workspace` per workspace mode
(what a step sees). Turning a run into a sandbox and collecting what it
left is the :class:`~haflowd.launch.Launcher`'s job, running it the
:class:`~haflowd.supervisor.Supervisor`'s (which reports each run's end
back to :meth:`Engine._run_ended`), and holding it to the disk quota
:class:`~haflowd.run_quota.RunQuotas`'.

``continue`` answers as soon as the run is recorded: preparing the
workspace, building a missing image and starting the sandbox happen in the
background, and a failure there fails the run (retryable) with the reason
in its log.

A daemon restart loses nothing: sandboxes keep running without us; at
start-up :meth:`Engine.start` re-attaches to every run in progress or
records the result of one that ended meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs

from . import verdict
from .agentfiles import regular_files
from .catalog import CODE_WORKFLOW, DEFAULT_WORKFLOW, Catalog, Definitions
from .clock import utcnow
from .config import Config
from .errors import BadRequest, Conflict, NotFound
from .executions import Executions, check_new_code_mission
from .ids import check_filename, new_mission_id, new_project_id, new_run_id
from .launch import Launcher
from .models import (
    RUNNING_STATUSES,
    CreateMissionRequest,
    Delivery,
    Execution,
    LinkProjectRequest,
    MissionMeta,
    MissionStatus,
    Project,
    StepRun,
    StepType,
    Workflow,
    WorkflowStep,
)
from .projects import ProjectStore
from .quota import check_artifact_write
from .run_quota import RunQuotas
from .sandbox.protocol import SandboxInfo, SandboxProvider
from .store import Store
from .supervisor import Launch, RunEnd, Stop, Supervisor
from .workspaces.protocol import Repositories

log = logging.getLogger(__name__)


@attrs.define
class Engine:
    store: Store
    definitions: Definitions
    sandbox: SandboxProvider
    config: Config
    #: Turns a run into its sandbox; knows the workspaces and agent adapters.
    launcher: Launcher
    projects: ProjectStore
    repositories: Repositories
    _locks: defaultdict[str, asyncio.Lock] = attrs.field(factory=lambda: defaultdict(asyncio.Lock), init=False)
    #: One creation at a time: the count limits hold however many requests race.
    _creating: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    supervisor: Supervisor = attrs.field(init=False)
    executions: Executions = attrs.field(init=False)
    quotas: RunQuotas = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.supervisor = Supervisor(store=self.store, sandbox=self.sandbox, on_end=self._run_ended)
        self.executions = Executions(
            store=self.store,
            sandbox=self.sandbox,
            limit=self.config.max_mission_bytes,
            max_files=self.config.max_command_files,
            log_bytes=self.config.max_command_log_bytes,
            max_workspace_bytes=self.config.max_workspace_bytes,
        )
        self.quotas = RunQuotas(store=self.store, limit=self.config.max_mission_bytes, stop=self.supervisor.stop)

    @property
    def catalog(self) -> Catalog:
        return self.definitions.catalog

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        """Re-attach to runs in progress and remove sandboxes nobody owns."""
        found = await self.supervisor.sandboxes()
        owned = await self.executions.recover(found)
        for meta in self.store.metas():
            if meta.status in RUNNING_STATUSES:
                owned.update(await self._recover(meta, found))
        await self.supervisor.remove_orphans(found, owned)

    async def close(self) -> None:
        """Stop watching; sandboxes keep running and are re-attached next start."""
        await self.supervisor.close()
        await self.executions.close()
        await self.quotas.close()

    async def _recover(self, meta: MissionMeta, found: dict[str, SandboxInfo]) -> set[str]:
        mission_id = meta.mission_id
        runs = self.store.runs(mission_id)
        open_runs = [r for r in runs if r.finished_at is None]
        if not open_runs:
            # The last run was recorded but the daemon died before the mission
            # moved on (or before the run file was written): finish the job.
            last = runs[-1] if runs else None
            if last is not None and last.exit_code is not None:
                await self._conclude(mission_id, last, RunEnd(last.exit_code))
            else:
                await self._fail(mission_id, "The daemon stopped while this step was starting; continue to retry.")
            return set()
        for run in open_runs[:-1]:
            # Only the newest run can be current; older open ones are debris.
            self.store.save_run(mission_id, attrs.evolve(run, finished_at=utcnow()))
        run = open_runs[-1]
        info = found.get(run.run_id)
        launch = self._launch_for(meta, run) if info is not None else None
        if info is None or launch is None:
            self.store.save_run(mission_id, attrs.evolve(run, finished_at=utcnow()))
            await self._fail(
                mission_id,
                f"The sandbox of run {run.run_id} disappeared while the daemon was down; continue to retry.",
            )
            return set()
        if run.sandbox_id != info.sandbox_id:
            run = self.store.save_run(mission_id, attrs.evolve(run, sandbox_id=info.sandbox_id))
            launch = attrs.evolve(launch, run=run)
        self.supervisor.reattach(launch, info.sandbox_id)
        self._watch_quota(meta, run)
        return {run.run_id}

    # -- commands (one per API verb) ---------------------------------------

    def mission_lock(self, mission_id: str) -> asyncio.Lock:
        """The lock every change of one mission is made under.

        Raises 404 for an unknown mission, so requests naming random ids
        cannot grow the table of locks.
        """
        self.store.get(mission_id)
        return self._locks[mission_id]

    def workflow_of(self, meta: MissionMeta) -> Workflow:
        workflow = self.catalog.workflow(meta.workflow_id)
        if workflow is None:
            raise Conflict(f"Workflow {meta.workflow_id!r} is no longer defined")
        return workflow

    async def create_mission(self, req: CreateMissionRequest) -> MissionMeta:
        """A new mission at its first step, ``raw-input.md`` written; 409 past the count limits."""
        async with self._creating:
            self._check_counts(code=req.project_id is not None)
            return await self._create_mission(req)

    def _check_counts(self, *, code: bool) -> None:
        metas = list(self.store.metas())
        limit = self.config.max_missions
        if len(metas) >= limit:
            raise Conflict(
                f"There are {len(metas)} missions, the most HAFLOW_MAX_MISSIONS ({limit}) allows: "
                "delete some or raise the setting"
            )
        code_limit = self.config.max_code_workspaces
        if code and (count := sum(1 for m in metas if m.project_id is not None)) >= code_limit:
            raise Conflict(
                f"There are {count} code missions, each with a clone of its repository, the most "
                f"HAFLOW_MAX_CODE_WORKSPACES ({code_limit}) allows: delete some or raise the setting"
            )

    async def _create_mission(self, req: CreateMissionRequest) -> MissionMeta:
        code_default = CODE_WORKFLOW if req.project_id and self.catalog.workflow(CODE_WORKFLOW) else None
        workflow_id = req.workflow_id or code_default or DEFAULT_WORKFLOW
        if self.catalog.workflow(workflow_id) is None:
            known = ", ".join(sorted(self.catalog.workflows))
            raise BadRequest(f"Invalid request: unknown workflow @ $.workflowId (known: {known})")
        mission_id = new_mission_id()
        code: dict[str, Any] = {}
        if req.project_id is not None:
            try:
                project = self.projects.get(req.project_id)
            except NotFound:
                raise BadRequest(f"Invalid request: unknown project {req.project_id!r} @ $.projectId") from None
            await asyncio.to_thread(
                check_new_code_mission, self.store, Path(project.path), self.config.max_workspace_bytes
            )
            code = {
                "project_id": project.project_id,
                # Resolved now, so the mission starts from what the user saw;
                # the clone itself is made by the first step that needs it.
                "base_commit": await self.repositories.resolve(project, req.base_ref),
                "branch": self.repositories.branch_name(req.type.value, req.title, mission_id),
            }
        elif req.base_ref is not None:
            raise BadRequest("Invalid request: baseRef needs a projectId @ $.baseRef")
        now = utcnow()
        meta = MissionMeta(
            mission_id=mission_id,
            title=req.title.strip(),
            type=req.type,
            workflow_id=workflow_id,
            current_step=0,
            status=MissionStatus.READY,
            created_at=now,
            updated_at=now,
            errors=(),
            **code,
        )
        await asyncio.to_thread(self.store.create, meta, req.raw_input)
        log.info("mission.created", extra={"mission_id": meta.mission_id, "workflow_id": workflow_id})
        return meta

    async def save_artifact(self, mission_id: str, filename: str, content: str) -> None:
        """Replace one artifact (a person's edit at a gate)."""
        check_filename(filename)
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            if meta.status in RUNNING_STATUSES:
                raise Conflict("An agent step is running and may be using this mission's files; save after it ends")
            data = content.encode()
            folder = self.store.artifacts_dir(mission_id)
            await asyncio.to_thread(check_artifact_write, folder, filename, len(data), self.config)
            await asyncio.to_thread(self.store.write_artifact, mission_id, filename, content)
            self._save(meta)
        log.info("artifact.saved", extra={"mission_id": mission_id, "artifact": filename})

    async def continue_mission(self, mission_id: str) -> None:
        """The contract's ``continue``: approve a gate, or (re)start an agent step."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            if meta.status in RUNNING_STATUSES:
                raise Conflict("An agent step is already running for this mission")
            if meta.status is MissionStatus.COMPLETED:
                raise Conflict("Mission is already completed")
            workflow = self.workflow_of(meta)
            if meta.current_step >= len(workflow.steps):
                raise Conflict("Mission has no step left to continue")
            step = workflow.steps[meta.current_step]
            if step.type is StepType.AGENT:
                self._start_run(meta, step)
            else:
                log.info("gate.approved", extra={"mission_id": mission_id, "step_id": step.step_id})
                self._advance(meta, workflow)

    async def cancel(self, mission_id: str) -> None:
        """Stop the running step; the mission fails and ``continue`` retries it."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            run = self._running_run(mission_id) if meta.status in RUNNING_STATUSES else None
            if run is None:
                raise Conflict("No agent step is running for this mission")
        await self.supervisor.stop(run, Stop("Cancelled by user; continue to retry the step."))

    async def mark_completed(self, mission_id: str) -> None:
        """Force the mission to ``completed``, stopping a running step first."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            workflow = self.catalog.workflow(meta.workflow_id)
            steps = len(workflow.steps) if workflow else meta.current_step
            run = self._running_run(mission_id) if meta.status in RUNNING_STATUSES else None
            self._save(meta, status=MissionStatus.COMPLETED, current_step=steps)
            log.info("mission.completed", extra={"mission_id": mission_id, "forced": True})
        if run is not None:
            await self.supervisor.stop(run, Stop("Mission marked completed", detached=True))

    async def request_changes(self, mission_id: str, feedback: str) -> None:
        """At a gate: save the feedback as ``feedback-<n>.md`` and run the agent step before the gate again."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            if meta.status not in (MissionStatus.WAITING_HUMAN, MissionStatus.WAITING_CODE_REVIEW):
                raise Conflict("Changes can only be requested at a gate (waiting for a human or a code review)")
            workflow = self.workflow_of(meta)
            index = next(
                (i for i in range(meta.current_step - 1, -1, -1) if workflow.steps[i].type is StepType.AGENT), None
            )
            if index is None:
                raise Conflict("There is no agent step before this gate to run again")
            existing = {e.name for e in await asyncio.to_thread(regular_files, self.store.artifacts_dir(mission_id))}
            number = next(n for n in range(1, 10_000) if f"feedback-{n}.md" not in existing)
            name = f"feedback-{number}.md"
            data = feedback.encode()
            folder = self.store.artifacts_dir(mission_id)
            await asyncio.to_thread(check_artifact_write, folder, name, len(data), self.config)
            await asyncio.to_thread(self.store.write_artifact, mission_id, name, feedback)
            step = workflow.steps[index]
            log.info("gate.changes_requested", extra={"mission_id": mission_id, "step_id": step.step_id})
            meta = self._save(meta, status=MissionStatus.READY, current_step=index, last_error=None)
            self._start_run(meta, step, feedback=name)

    async def link_project(self, req: LinkProjectRequest) -> Project:
        """Record a user's repository (nothing is written into it)."""
        path, default_branch = await self.repositories.validate(req.path)
        name = (req.name or "").strip() or Path(path).name
        project = Project(
            project_id=new_project_id(),
            name=name,
            path=path,
            created_at=utcnow(),
            default_branch=default_branch,
            test_command=(req.test_command or "").strip() or None,
            image=(req.image or "").strip() or None,
        )
        await asyncio.to_thread(self.projects.add, project)
        log.info("project.linked", extra={"project_id": project.project_id})
        return project

    async def unlink_project(self, project_id: str) -> None:
        """Forget a project; missions keep their clones and the repository is untouched."""
        await asyncio.to_thread(self.projects.remove, project_id)
        log.info("project.unlinked", extra={"project_id": project_id})

    def project_of(self, meta: MissionMeta) -> Project:
        if meta.project_id is None:
            raise Conflict("This mission has no project (it is not a code mission)")
        try:
            return self.projects.get(meta.project_id)
        except NotFound:
            raise Conflict(f"The mission's project {meta.project_id} is no longer linked") from None

    async def deliver(self, mission_id: str, branch: str | None) -> Delivery:
        """Create the mission's branch in the user's repository (at a code review, or once completed)."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            project = self.project_of(meta)
            if meta.status not in (MissionStatus.WAITING_CODE_REVIEW, MissionStatus.COMPLETED):
                raise Conflict("A mission is delivered at its code review or once completed")
            target = branch or meta.branch
            assert target is not None
            delivery = await self.repositories.deliver(meta, project, target)
            self._save(meta, delivered=delivery)
        log.info("mission.delivered", extra={"mission_id": mission_id, "branch": delivery.branch})
        return delivery

    async def run_command(self, mission_id: str, command: str, timeout_ms: int | None) -> Execution:
        """Run ``command`` in a sandbox on a copy of the mission's work tree."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            project = self.project_of(meta)
            return await self.executions.start(
                meta,
                command,
                timeout_ms=timeout_ms,
                image=project.image or self.config.agent_image,
                snapshot=self.repositories.snapshot,
            )

    async def delete_mission(self, mission_id: str) -> None:
        """Stop what runs, then remove the mission's folder and clone."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            run = self._running_run(mission_id) if meta.status in RUNNING_STATUSES else None
            # Completed first: the run's end then records nothing more.
            self._save(meta, status=MissionStatus.COMPLETED)
        if run is not None:
            await self.supervisor.stop(run, Stop("Mission deleted", detached=True))
        await self.executions.stop(mission_id)
        async with self.mission_lock(mission_id):
            await asyncio.to_thread(self.store.delete, mission_id)
        self._locks.pop(mission_id, None)
        log.info("mission.deleted", extra={"mission_id": mission_id})

    def _running_run(self, mission_id: str) -> StepRun | None:
        open_runs = [r for r in self.store.runs(mission_id) if r.finished_at is None]
        return open_runs[-1] if open_runs else None

    # -- state changes (callers hold the mission's lock) --------------------

    def _save(self, meta: MissionMeta, **changes: Any) -> MissionMeta:
        return self.store.save(attrs.evolve(meta, updated_at=utcnow(), **changes))

    def _advance(self, meta: MissionMeta, workflow: Workflow) -> None:
        index = meta.current_step + 1
        if index >= len(workflow.steps):
            self._save(meta, status=MissionStatus.COMPLETED, current_step=len(workflow.steps), last_error=None)
            log.info("mission.completed", extra={"mission_id": meta.mission_id})
            return
        step = workflow.steps[index]
        if step.type is StepType.AGENT:
            meta = self._save(meta, status=MissionStatus.READY, current_step=index, last_error=None)
            self._start_run(meta, step)
        else:
            status = (
                MissionStatus.WAITING_CODE_REVIEW if step.type is StepType.CODE_REVIEW else MissionStatus.WAITING_HUMAN
            )
            self._save(meta, status=status, current_step=index, last_error=None)
            log.info(f"mission.{status.value}", extra={"mission_id": meta.mission_id, "step_id": step.step_id})

    def _start_run(self, meta: MissionMeta, step: WorkflowStep, *, feedback: str | None = None) -> None:
        """Record a new run of ``step`` and hand it to the supervisor."""
        mission_id = meta.mission_id
        run = StepRun(step_id=step.step_id, run_id=new_run_id(), started_at=utcnow(), feedback_artifact=feedback)
        # Meta first: a crash before the run file exists is then seen at
        # start-up as "running without a run" and failed cleanly.
        meta = self._save(meta, status=MissionStatus.RUNNING_CODE_AGENT, last_error=None)
        try:
            self.store.save_run(mission_id, run)
        except OSError as exc:
            log.exception("run.prepare_failed", extra={"mission_id": mission_id, "run_id": run.run_id})
            self._fail_locked(meta, f"Step '{step.name}' could not start: cannot write its run files ({exc.strerror}).")
            return
        launch = self._launch_for(meta, run)
        assert launch is not None  # the step was just found in the workflow
        log.info("run.starting", extra={"mission_id": mission_id, "run_id": run.run_id, "step_id": step.step_id})
        self.supervisor.launch(launch)

    def _launch_for(self, meta: MissionMeta, run: StepRun) -> Launch | None:
        return self.launcher.launch(meta, run, on_prepared=lambda: self._watch_quota(meta, run))

    def _watch_quota(self, meta: MissionMeta, run: StepRun) -> None:
        """Hold the live run to the mission's disk quota (artifacts, and what the workspace lets it grow)."""
        found = self.launcher.step_of(meta, run)
        grown = self.launcher.workspace(meta).grown_folders(meta)
        self.quotas.watch(meta.mission_id, run, found[0] if found else None, grown)

    def _fail_locked(self, meta: MissionMeta, message: str) -> None:
        self._save(meta, status=MissionStatus.FAILED, errors=(*meta.errors, message), last_error=message)
        log.info("mission.failed", extra={"mission_id": meta.mission_id, "error": message})

    async def _fail(self, mission_id: str, message: str) -> None:
        async with self.mission_lock(mission_id):
            self._fail_locked(self.store.get(mission_id), message)

    # -- the end of a run ---------------------------------------------------

    async def _run_ended(self, mission_id: str, run: StepRun, end: RunEnd) -> None:
        """The supervisor's report: record the run, collect its work, move the mission on."""
        try:
            end = await self.quotas.end(mission_id, run, end)
            await self._conclude(mission_id, run, end)
        except Exception as exc:
            # Whatever went wrong, the mission must not stay "running".
            log.exception("run.conclude_failed", extra={"mission_id": mission_id, "run_id": run.run_id})
            with contextlib.suppress(Exception):
                self.store.save_run(mission_id, attrs.evolve(run, finished_at=run.finished_at or utcnow()))
            message = verdict.unrecorded(exc)
            try:
                await self._fail(mission_id, message)
            except Exception:
                # Not even that could be written: failed in memory, so it does
                # not show running and continue can retry; the file on disk
                # still says running, which start-up repairs.
                log.exception("run.fail_unsaved", extra={"mission_id": mission_id, "run_id": run.run_id})
                with contextlib.suppress(Exception):
                    meta = self.store.get(mission_id)
                    self.store.remember(
                        attrs.evolve(
                            meta,
                            status=MissionStatus.FAILED,
                            errors=(*meta.errors, message),
                            last_error=message,
                            updated_at=utcnow(),
                        )
                    )

    async def _conclude(self, mission_id: str, run: StepRun, end: RunEnd) -> None:
        meta = self.store.get(mission_id)
        found = self.launcher.step_of(meta, run)
        step = found[0] if found else None
        outcome = end.outcome
        problem: str | None = None
        changes: dict[str, Any] = {}
        if outcome is not None:
            changes.update(usage=outcome.usage, result=outcome.result)
        if step is not None and end.exit_code == 0 and end.stop is None and (outcome is None or outcome.success):
            collected = await self.launcher.collect(meta, step, run.run_id, outcome.result if outcome else None)
            problem = collected.problem
            changes.update(commit=collected.commit, changes=collected.changes)
        run = attrs.evolve(
            run,
            finished_at=run.finished_at or utcnow(),
            exit_code=end.exit_code if end.exit_code is not None else run.exit_code,
            **{k: v for k, v in changes.items() if v is not None},
        )
        async with self.mission_lock(mission_id):
            self.store.save_run(mission_id, run)
            meta = self.store.get(mission_id)
            if outcome is not None and outcome.usage is not None:
                # Only a fresh outcome counts: a run concluded again after a
                # restart carries no outcome, so nothing is added twice.
                meta = self._save(meta, usage=outcome.usage if meta.usage is None else meta.usage + outcome.usage)
            if end.stop is not None and end.stop.detached:
                return
            workflow = self.workflow_of(meta)
            current = workflow.steps[meta.current_step] if meta.current_step < len(workflow.steps) else None
            if meta.status not in RUNNING_STATUSES or current is None or current.step_id != run.step_id:
                return
            why = verdict.failure(current, end) or problem
            if why is not None:
                self._fail_locked(meta, why)
            else:
                self._advance(meta, workflow)
