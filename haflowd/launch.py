"""Turning one run of a step into a sandbox: mounts, prompt, secrets, environment.

The engine decides *that* a step runs; a :class:`Launcher` works out *what*
runs. It finds the step's agent and adapter, has the mission's workspace
prepare its files, asks the adapter for the command line and prompt, feeds
that prompt through a read-only file, resolves secrets by name and gives a
code mission's agent leave to use git on a work tree it does not own. The
result is a :class:`~haflowd.supervisor.Launch` the supervisor runs. Once
the run exited 0, :meth:`Launcher.collect` has the workspace look at what it
left (a codegen step's changes become a commit, and a report for review).

Which prompt template a step gets is the agents' business: the launcher
asks the :class:`~haflowd.agents.protocol.PromptChooser` it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import attrs

from . import secrets
from .agentfiles import is_regular
from .agents.protocol import AgentAdapter, PromptChooser, StepContext
from .catalog import Definitions
from .config import Config
from .errors import HaflowError
from .models import AgentSpec, MissionMeta, StepRun, WorkflowStep, WorkspaceMode
from .run_log import NOTE_PREFIX
from .sandbox.protocol import Mount, SandboxError, SandboxSpec
from .store import Store
from .supervisor import Launch
from .workspaces.protocol import ARTIFACTS_TARGET, WORKSPACE_TARGET, Collected, LogLine, Workspace

#: Where an agent whose adapter feeds it a prompt finds it (read-only).
PROMPT_TARGET = "/mission/prompt.md"
#: The most of an input artifact an adapter gets inline in its prompt.
PROMPT_INPUT_BYTES = 256 * 1024
#: The working folder of a step that does not edit a work tree.
MISSION_TARGET = "/mission"


@attrs.frozen
class Launcher:
    """Makes the :class:`Launch` of a run from its step, agent and workspace."""

    store: Store
    config: Config
    definitions: Definitions
    #: The workspace of plain missions, and the one of code missions.
    workspaces: Mapping[WorkspaceMode, Workspace]
    adapter_for: Callable[[AgentSpec], AgentAdapter]
    prompts: PromptChooser

    def step_of(self, meta: MissionMeta, run: StepRun) -> tuple[WorkflowStep, AgentSpec] | None:
        """The step ``run`` runs and its agent, if the catalog in force still has both."""
        catalog = self.definitions.catalog
        workflow = catalog.workflow(meta.workflow_id)
        step = next((s for s in workflow.steps if s.step_id == run.step_id), None) if workflow else None
        agent = catalog.agents.get(step.agent or "") if step else None
        return (step, agent) if step is not None and agent is not None else None

    def workspace(self, meta: MissionMeta) -> Workspace:
        """Every step of a mission on a project works in its clone; others in the artifacts folder."""
        return self.workspaces[WorkspaceMode.CODEGEN if meta.project_id else WorkspaceMode.DOCUMENT]

    def launch(self, meta: MissionMeta, run: StepRun, *, on_prepared: Callable[[], None]) -> Launch | None:
        """What the supervisor needs to run (or re-attach to) ``run``; ``None`` if its step is gone.

        ``on_prepared`` is called once the workspace is ready and before
        the sandbox starts (a clone is not the agent's writing).
        """
        found = self.step_of(meta, run)
        if found is None:
            return None
        step, agent = found
        adapter = self.adapter_for(agent)

        async def prepare(note: LogLine) -> SandboxSpec:
            spec = await self.spec(meta, step, agent, adapter, run.run_id, run.feedback_artifact, note)
            on_prepared()
            return spec

        def known_secrets() -> list[str]:
            # Re-attached after a restart, prepare() does not run again: the
            # values to redact are looked up by the names the adapter asks
            # for (the texts only shape the prompt, so none are read here).
            # Blocking (files): the supervisor calls it in a thread.
            context = self.step_context(meta, step, agent, run.run_id, run.feedback_artifact)
            names = adapter.invocation(context).secrets
            return list(secrets.known_values(names, self.config.home).values())

        return Launch(
            mission_id=meta.mission_id,
            run=run,
            prepare=prepare,
            parser=adapter.parser(),
            structured=adapter.structured,
            timeout_seconds=agent.timeout_seconds,
            known_secrets=known_secrets,
        )

    async def spec(
        self,
        meta: MissionMeta,
        step: WorkflowStep,
        agent: AgentSpec,
        adapter: AgentAdapter,
        run_id: str,
        feedback: str | None,
        note: LogLine,
    ) -> SandboxSpec:
        """Prepare the step's files and return the sandbox to start (a missing secret fails the start)."""
        mounts = await self.workspace(meta).prepare(meta, step, run_id, note)
        invocation = adapter.invocation(await self.context(meta, step, agent, run_id, feedback))
        command = invocation.command
        if invocation.stdin is not None:
            prompt = await asyncio.to_thread(self.store.write_prompt, meta.mission_id, run_id, invocation.stdin)
            mounts = (*mounts, Mount(prompt, PROMPT_TARGET, read_only=True, name="prompt"))
            # A fixed script; the agent's argv follows as "$@", never parsed by a shell.
            command = ("/bin/sh", "-c", f'exec "$@" < {PROMPT_TARGET}', "sh", *command)
        try:
            secret_values = secrets.resolve(invocation.secrets, self.config.home)
        except secrets.MissingSecret as exc:
            raise SandboxError(exc.message) from None
        return SandboxSpec(
            mission_id=meta.mission_id,
            run_id=run_id,
            step_id=step.step_id,
            image=agent.image or self.config.agent_image,
            command=command,
            env=with_git_safe_directory(invocation.env) if meta.project_id else dict(invocation.env),
            secrets=secret_values,
            mounts=mounts,
            workdir=WORKSPACE_TARGET if step.workspace_mode is WorkspaceMode.CODEGEN else MISSION_TARGET,
            network=agent.network,
            egress=agent.egress,
            local_ports=agent.local_ports,
            limits=agent.limits,
            # Notes after the start go to the readable log only where it is
            # apart from the raw output (re-attaching counts raw bytes).
            notes=note if adapter.structured else None,
        )

    async def collect(self, meta: MissionMeta, step: WorkflowStep, run_id: str, result: str | None) -> Collected:
        """What a run that exited 0 left in its workspace; a codegen step also gets a report if it wrote none."""

        def note(text: str) -> None:
            # Progress only: a log that cannot be written must not stop the run's result.
            with contextlib.suppress(OSError), self.store.open_log(meta.mission_id, run_id) as logfile:
                logfile.write(f"{NOTE_PREFIX}{text}\n".encode())

        collected = await self.workspace(meta).collect(meta, step, run_id, 0, note)
        if collected.problem is None and step.workspace_mode is WorkspaceMode.CODEGEN and step.output_artifact:
            await asyncio.to_thread(write_codegen_report, self.store, meta.mission_id, step, collected, result)
        return collected

    async def context(
        self, meta: MissionMeta, step: WorkflowStep, agent: AgentSpec, run_id: str, feedback: str | None
    ) -> StepContext:
        """The step's full context: with the input and feedback texts (bounded, missing ones left empty)."""
        input_text = ""
        if step.input_artifact:
            with contextlib.suppress(HaflowError):
                input_text = await asyncio.to_thread(
                    self.store.read_artifact, meta.mission_id, step.input_artifact, PROMPT_INPUT_BYTES
                )
        feedback_text = None
        if feedback:
            with contextlib.suppress(HaflowError):
                feedback_text = await asyncio.to_thread(
                    self.store.read_artifact, meta.mission_id, feedback, PROMPT_INPUT_BYTES
                )
        context = await asyncio.to_thread(self.step_context, meta, step, agent, run_id, feedback)
        return attrs.evolve(context, input_text=input_text, feedback_text=feedback_text)

    def step_context(
        self,
        meta: MissionMeta,
        step: WorkflowStep,
        agent: AgentSpec,
        run_id: str,
        feedback: str | None,
    ) -> StepContext:
        """The step's context without the input and feedback texts (it may read prompt templates: blocking)."""
        codegen = step.workspace_mode is WorkspaceMode.CODEGEN
        return StepContext(
            mission_id=meta.mission_id,
            mission_title=meta.title,
            mission_type=meta.type.value,
            run_id=run_id,
            step_id=step.step_id,
            step_name=step.name,
            agent=agent,
            prompt=agent.prompt or self.prompts.default_prompt(step.step_id, codegen=codegen),
            input_artifact=step.input_artifact,
            output_artifact=step.output_artifact,
            feedback_artifact=feedback,
            codegen=codegen,
            artifacts_dir=ARTIFACTS_TARGET,
        )


def write_codegen_report(
    store: Store, mission_id: str, step: WorkflowStep, collected: Collected, result: str | None
) -> None:
    """Give the code review its artifact when the agent wrote none (real CLIs commit code, not reports).

    Blocking (files). A report that cannot be written leaves the review without it, not the run failed.
    """
    assert step.output_artifact is not None
    if is_regular(store.artifacts_dir(mission_id) / step.output_artifact):
        return
    lines = [f"# {step.name}", "", result.strip() if result else "The agent left no message.", ""]
    if collected.commit and collected.changes:
        c = collected.changes
        lines.append(f"Commit `{collected.commit[:12]}`: {c.files} files changed, +{c.insertions} -{c.deletions}.")
    else:
        lines.append("The work tree is unchanged: no commit.")
    with contextlib.suppress(OSError, HaflowError):
        store.write_artifact(mission_id, step.output_artifact, "\n".join(lines) + "\n")


def with_git_safe_directory(env: Mapping[str, str]) -> dict[str, str]:
    """Let the agent's own git read ``/workspace/.git``, which belongs to the daemon's user."""
    out = dict(env)
    if "GIT_CONFIG_COUNT" not in out:
        out.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0=WORKSPACE_TARGET)
    return out
