"""A run becomes its sandbox: the workspace's mounts, the adapter's command and prompt, secrets and git's leave."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from haflowd.agents.protocol import Invocation, Outcome, OutputParser, StepContext
from haflowd.catalog import Catalog, Definitions
from haflowd.clock import utcnow
from haflowd.config import Config
from haflowd.launch import PROMPT_TARGET, Launcher, with_git_safe_directory, write_codegen_report
from haflowd.models import (
    AgentSpec,
    Changes,
    MissionMeta,
    MissionStatus,
    MissionType,
    StepRun,
    StepType,
    Workflow,
    WorkflowStep,
    WorkspaceMode,
)
from haflowd.sandbox.protocol import Mount, SandboxError, SandboxSpec
from haflowd.store import Store
from haflowd.workspaces.artifacts import ArtifactsWorkspace
from haflowd.workspaces.protocol import Collected, LogLine

MISSION, RUN = "m-0000abcd", "r-0000abcd"
DRAFT = WorkflowStep(
    "research-2", "Research", StepType.AGENT, agent="a", input_artifact="raw-input.md", output_artifact="research.md"
)
CODE = WorkflowStep(
    "build", "Build", StepType.AGENT, agent="a", output_artifact="report.md", workspace_mode=WorkspaceMode.CODEGEN
)


class _Parser:
    def feed(self, line: str) -> Sequence[str]:
        return [line]

    def finish(self, exit_code: int) -> Outcome:
        return Outcome(success=exit_code == 0)


@attrs.define
class _Adapter:
    """An adapter that feeds a prompt naming its template, and remembers the contexts it was given."""

    secrets: tuple[str, ...] = ()
    adapter_id: str = "fake"
    structured: bool = False
    seen: list[StepContext] = attrs.field(factory=list)

    def invocation(self, ctx: StepContext) -> Invocation:
        self.seen.append(ctx)
        return Invocation(command=("agent", "--go"), env={"A": "1"}, secrets=self.secrets, stdin=f"use {ctx.prompt}")

    def parser(self) -> OutputParser:
        return _Parser()


class _Tree:
    """A code mission's workspace that mounts nothing and finds the work tree unchanged."""

    async def prepare(self, mission: MissionMeta, step: WorkflowStep, run_id: str, log: LogLine) -> tuple[Mount, ...]:
        return ()

    async def collect(
        self, mission: MissionMeta, step: WorkflowStep, run_id: str, exit_code: int, log: LogLine
    ) -> Collected:
        return Collected()

    def grown_folders(self, mission: MissionMeta) -> tuple[Path, ...]:
        return ()


class _Prompts:
    """A prompt library that names every template after the step and whether it edits code."""

    def default_prompt(self, step_id: str, *, codegen: bool) -> str:
        return f"{step_id}-{'code' if codegen else 'doc'}"


def _launcher(tmp_path: Path, config: Config, adapter: _Adapter, *, agent: AgentSpec | None = None) -> Launcher:
    store = Store(config.missions_dir)
    workflow = Workflow("wf", "Workflow", (DRAFT, CODE))
    catalog = Catalog(workflows={"wf": workflow}, agents={"a": agent or AgentSpec("a", command=("agent",))})
    return Launcher(
        store=store,
        config=config,
        definitions=Definitions(catalog),
        workspaces={WorkspaceMode.DOCUMENT: ArtifactsWorkspace(store), WorkspaceMode.CODEGEN: _Tree()},
        adapter_for=lambda _: adapter,
        prompts=_Prompts(),
    )


def _mission(launcher: Launcher, *, project_id: str | None = None) -> MissionMeta:
    now = utcnow()
    meta = MissionMeta(
        MISSION, "Dark mode", MissionType.FEATURE, "wf", 0, MissionStatus.READY, now, now, (), project_id=project_id
    )
    return launcher.store.create(meta, "Make it dark.")


def _note(text: str) -> None:
    pass


def _nothing() -> None:
    pass


async def _spec(launcher: Launcher, meta: MissionMeta, step: WorkflowStep, feedback: str | None = None) -> SandboxSpec:
    run = StepRun(step.step_id, RUN, utcnow(), feedback_artifact=feedback)
    launch = launcher.launch(meta, run, on_prepared=_nothing)
    assert launch is not None
    return await launch.prepare(_note)


class TestLaunch:
    async def test_prompt_is_a_read_only_file_on_stdin(self, tmp_path: Path, config: Config) -> None:
        """The adapter's prompt is written to the mission, mounted read-only and fed to the command's stdin."""
        launcher = _launcher(tmp_path, config, _Adapter())
        spec = await _spec(launcher, _mission(launcher), DRAFT)
        assert spec.command == ("/bin/sh", "-c", f'exec "$@" < {PROMPT_TARGET}', "sh", "agent", "--go")
        prompt = next(m for m in spec.mounts if m.target == PROMPT_TARGET)
        assert prompt.read_only and Path(prompt.source).read_text() == "use research-2-doc"
        assert (spec.workdir, spec.env) == ("/mission", {"A": "1"})

    @pytest.mark.parametrize(("own", "expected"), [(None, "build-code"), ("custom", "custom")])
    async def test_template_is_the_agents_or_the_prompt_librarys(
        self, tmp_path: Path, config: Config, own: str | None, expected: str
    ) -> None:
        """An agent's own template wins; otherwise the injected prompt library names it."""
        adapter = _Adapter()
        launcher = _launcher(tmp_path, config, adapter, agent=AgentSpec("a", command=("agent",), prompt=own))
        spec = await _spec(launcher, _mission(launcher), CODE)
        assert adapter.seen[-1].prompt == expected and adapter.seen[-1].codegen
        assert spec.workdir == "/workspace"

    async def test_input_and_feedback_texts_reach_the_adapter(self, tmp_path: Path, config: Config) -> None:
        """The step's input artifact and a reviewer's feedback are handed to the adapter as text."""
        adapter = _Adapter()
        launcher = _launcher(tmp_path, config, adapter)
        meta = _mission(launcher)
        launcher.store.write_artifact(MISSION, "feedback-1.md", "Darker.")
        await _spec(launcher, meta, DRAFT, feedback="feedback-1.md")
        ctx = adapter.seen[-1]
        assert (ctx.input_text, ctx.feedback_text) == ("Make it dark.", "Darker.")
        assert ctx.feedback_artifact == "feedback-1.md"

    async def test_secrets_by_name(self, tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
        """Secrets the adapter names come from the daemon's environment; a missing one fails the start."""
        launcher = _launcher(tmp_path, config, _Adapter(secrets=("HAFLOW_TEST_LAUNCH_KEY",)))
        meta = _mission(launcher)
        with pytest.raises(SandboxError, match="HAFLOW_TEST_LAUNCH_KEY"):
            await _spec(launcher, meta, DRAFT)
        monkeypatch.setenv("HAFLOW_TEST_LAUNCH_KEY", "sk-1")
        assert (await _spec(launcher, meta, DRAFT)).secrets == {"HAFLOW_TEST_LAUNCH_KEY": "sk-1"}

    async def test_code_mission_may_use_git(self, tmp_path: Path, config: Config) -> None:
        """A code mission's agent is allowed to run git on the work tree the daemon's user owns."""
        launcher = _launcher(tmp_path, config, _Adapter())
        spec = await _spec(launcher, _mission(launcher, project_id="p-0000abcd"), CODE)
        assert spec.env["GIT_CONFIG_VALUE_0"] == "/workspace"

    def test_no_launch_for_a_step_no_longer_defined(self, tmp_path: Path, config: Config) -> None:
        """A run whose step left the catalog has no launch (the engine fails it)."""
        launcher = _launcher(tmp_path, config, _Adapter())
        run = StepRun("gone", RUN, utcnow())
        assert launcher.launch(_mission(launcher), run, on_prepared=_nothing) is None

    async def test_on_prepared_runs_once_the_workspace_is_ready(self, tmp_path: Path, config: Config) -> None:
        """The launch tells its caller when the step's files are ready, before the sandbox starts."""
        launcher = _launcher(tmp_path, config, _Adapter())
        calls: list[str] = []
        run = StepRun(DRAFT.step_id, RUN, utcnow())
        launch = launcher.launch(_mission(launcher), run, on_prepared=lambda: calls.append("ready"))
        assert launch is not None and calls == []
        await launch.prepare(_note)
        assert calls == ["ready"]


class TestGitSafeDirectory:
    def test_added_unless_the_agent_configures_git_itself(self) -> None:
        """The safe-directory setting is added, but an agent's own GIT_CONFIG_* entries are left alone."""
        assert with_git_safe_directory({"A": "1"}) == {
            "A": "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": "/workspace",
        }
        own = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "x"}
        assert with_git_safe_directory(own) == own


class TestCodegenReport:
    def test_report_written_when_the_agent_wrote_none(self, tmp_path: Path, config: Config) -> None:
        """A codegen step that left no report gets one naming its message and commit."""
        launcher = _launcher(tmp_path, config, _Adapter())
        _mission(launcher)
        collected = Collected(commit="0123456789abcdef", changes=Changes(2, 10, 3))
        write_codegen_report(launcher.store, MISSION, CODE, collected, " Done. ")
        text = launcher.store.read_artifact(MISSION, "report.md")
        assert text == "# Build\n\nDone.\n\nCommit `0123456789ab`: 2 files changed, +10 -3.\n"

    def test_agents_own_report_kept(self, tmp_path: Path, config: Config) -> None:
        """A report the agent wrote itself is never replaced."""
        launcher = _launcher(tmp_path, config, _Adapter())
        _mission(launcher)
        launcher.store.write_artifact(MISSION, "report.md", "mine\n")
        write_codegen_report(launcher.store, MISSION, CODE, Collected(), None)
        assert launcher.store.read_artifact(MISSION, "report.md") == "mine\n"

    async def test_collect_writes_the_report_of_an_unchanged_tree(self, tmp_path: Path, config: Config) -> None:
        """Collecting a codegen step's run leaves a report saying the work tree is unchanged."""
        launcher = _launcher(tmp_path, config, _Adapter())
        meta = _mission(launcher, project_id="p-0000abcd")
        assert await launcher.collect(meta, CODE, RUN, None) == Collected()
        text = launcher.store.read_artifact(MISSION, "report.md")
        assert text.endswith("The agent left no message.\n\nThe work tree is unchanged: no commit.\n")
