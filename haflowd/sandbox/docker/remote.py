"""The sandbox provider for a Docker engine that does not share the daemon's disk.

It runs the same hardened, labelled containers as :class:`DockerProvider`
(whose argument building, output, wait, stop and list it reuses), but talks to
another engine (``DOCKER_HOST`` or a Docker context, set in the CLI's own
environment) and never bind-mounts a path of the daemon's host:

* each mount becomes a Docker volume labelled with the run, filled from a tar
  stream that :mod:`tarfile` makes of the mount's source (owned by the agent's
  user, symlinks kept as symlinks) through a never-started helper container;
* after the run, :meth:`RemoteDockerProvider.wait` copies every writable mount
  back (``docker cp ctr:/target -``) and unpacks it with
  :mod:`haflowd.sandbox.unpack` before it returns, so the engine's ``collect``
  sees the agent's files;
* :meth:`RemoteDockerProvider.remove` deletes the container and its volumes.

A mount whose source is a file (the prompt) is carried by a volume on its
parent folder, seeded with the image's content there.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import attrs

from ...proc import Completed, reap
from ..areas import pack_path
from ..protocol import (
    LABEL_INSTANCE,
    LABEL_MISSION,
    LABEL_RUN,
    SandboxError,
    SandboxInfo,
    SandboxSpec,
    SandboxUnavailable,
)
from ..unpack import MAX_BYTES, MAX_MEMBERS, unpack_file, unpack_tree
from .local import (
    UNPRIVILEGED_USER,
    DockerProvider,
    _checked_ref,
    _gone,
    _missing_image,
    _numeric_user,
)

logger = logging.getLogger(__name__)

#: Label on a run's container listing its writable mounts, so the files come
#: back also after a daemon restart: JSON ``[[source, target, is_file, keep], ...]``.
LABEL_WRITABLE = "haflow.remote.writable"
#: Label on the short-lived container that fills a run's volumes.
LABEL_FILL = "haflow.fill"
#: Where the fill container mounts a folder mount's volume (``/<prefix>/<i>/<name>``).
_FILL_ROOT = "/haflow-fill"
_READ_SIZE = 64 * 1024


@attrs.frozen
class _Volume:
    """One mount of a spec as the remote engine holds it."""

    name: str
    source: Path
    #: Where the run's container mounts the volume (a file mount: its parent).
    target: str
    #: The folder or file name the volume's tar stream holds.
    member: str
    is_file: bool
    read_only: bool
    #: Top-level entries another mount occupies (left alone on the way back).
    keep: tuple[str, ...] = ()
    #: The area's own caps on what may come back.
    max_bytes: int = MAX_BYTES
    max_files: int = MAX_MEMBERS

    @property
    def fill_parent(self) -> str:
        """Where the fill container takes this volume's tar stream."""
        return self.target if self.is_file else f"{_FILL_ROOT}/{self.name}"

    def mount_arg(self, *, fill: bool) -> str:
        """The ``--mount`` value: in the fill container always writable."""
        fields = ["type=volume", f"src={self.name}"]
        if fill:
            fields.append(f"dst={self.fill_parent if self.is_file else self.fill_parent + '/' + self.member}")
        else:
            fields.append(f"dst={self.target}")
            if self.read_only:
                fields.append("readonly")
        if not self.is_file:
            # The folder's content is exactly the source's, never the image's.
            fields.append("volume-nocopy")
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(fields)
        return out.getvalue()


def plan_volumes(spec: SandboxSpec) -> list[_Volume]:
    """The volumes that carry ``spec.mounts``, after checking they can be carried."""
    volumes: list[_Volume] = []
    targets = [posixpath.normpath(m.target) for m in spec.mounts]
    for index, mount in enumerate(spec.mounts):
        target = targets[index]
        if not target.startswith("/") or target == "/" or target.startswith(_FILL_ROOT):
            raise SandboxError(f"Cannot mount into {mount.target!r} on a remote engine")
        source = Path(mount.source)
        if not source.exists():
            raise SandboxError(f"The folder to mount does not exist: {source}")
        is_file = not source.is_dir()
        if is_file and not source.is_file():
            raise SandboxError(f"Only folders and regular files can be mounted: {source}")
        name = f"haflow-{spec.run_id}-{index}"
        if is_file:
            parent = posixpath.dirname(target)
            if parent == "/" or parent in targets or any(v.is_file and v.target == parent for v in volumes):
                raise SandboxError(f"Cannot mount the file {mount.target!r} on a remote engine (its folder is taken)")
            volumes.append(
                _Volume(
                    name,
                    source,
                    parent,
                    posixpath.basename(target),
                    True,
                    mount.read_only,
                    max_bytes=mount.max_bytes,
                    max_files=mount.max_files,
                )
            )
            continue
        nested = [t[len(target) + 1 :] for t in targets if t.startswith(target + "/")]
        nested += [
            posixpath.dirname(t)[len(target) + 1 :]
            for t, m in zip(targets, spec.mounts, strict=True)
            if Path(m.source).is_file() and posixpath.dirname(t).startswith(target + "/")
        ]
        if any("/" in n for n in nested):
            raise SandboxError(
                f"Mounts nested deeper than one folder inside {mount.target!r} are not supported remotely"
            )
        volumes.append(
            _Volume(
                name,
                source,
                target,
                posixpath.basename(target),
                False,
                mount.read_only,
                tuple(sorted(set(nested))),
                mount.max_bytes,
                mount.max_files,
            )
        )
    return volumes


def pack(volume: _Volume, out: IO[bytes], uid: int, gid: int) -> None:
    """Write the tar stream that fills ``volume``, owned by ``uid:gid``."""
    pack_path(volume.source, volume.member, out, uid, gid)


@attrs.define
class RemoteDockerProvider(DockerProvider):
    """Runs sandboxes on a Docker engine reached through ``docker_host`` or ``context``.

    Exactly one of ``docker_host`` (``ssh://user@host``, ``tcp://host:2376``,
    ``unix:///path``) and ``context`` (a ``docker context`` name, e.g. one
    with TLS material) says which engine. Nothing is bind-mounted: mounts
    travel as tar streams into volumes and back.
    """

    docker_host: str | None = None
    context: str | None = None
    max_back_bytes: int = MAX_BYTES
    max_back_members: int = MAX_MEMBERS
    #: Folders that writable mounts must lie in (the daemon's home); empty: any.
    #: The list of writable mounts is read back from a label of the remote
    #: container, so an engine that forged it could otherwise choose where
    #: on this host files are unpacked.
    writable_roots: tuple[Path, ...] = ()
    #: Seconds one tar stream (in or back) may take.
    transfer_timeout: float = 600.0
    #: Runs whose volumes are being filled (their container does not exist yet).
    _starting: set[str] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        if (self.docker_host is None) == (self.context is None):
            raise ValueError("RemoteDockerProvider needs exactly one of docker_host and context")
        super().__attrs_post_init__()

    # -- plumbing ---------------------------------------------------------

    def target_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The CLI's environment: ``base`` (default ours) pointed at the remote engine."""
        env = dict(os.environ if base is None else base)
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        if self.docker_host is not None:
            env["DOCKER_HOST"] = self.docker_host
        else:
            assert self.context is not None
            env["DOCKER_CONTEXT"] = self.context
        return env

    def _cli_env(self) -> Mapping[str, str] | None:
        return self.target_env()

    async def _cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        limit: float | None = -1.0,
    ) -> Completed:
        return await super()._cli(*args, env=self.target_env(env), limit=limit)

    async def _stream(
        self, *args: str, stdin: IO[bytes] | int, stdout: int, stderr: int = asyncio.subprocess.PIPE
    ) -> asyncio.subprocess.Process:
        """Start ``docker *args`` against the remote engine with streams of the caller's choice."""
        try:
            return await asyncio.create_subprocess_exec(
                self._binary(),
                *args,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=self.target_env(),
            )
        except OSError as e:
            raise SandboxUnavailable(f"The Docker CLI cannot be run ({e.strerror})") from None

    def _check_writable(self, source: Path) -> Path:
        """``source`` resolved, refused unless it lies in one of ``writable_roots``."""
        resolved = source.resolve()
        roots = [root.resolve() for root in self.writable_roots]
        if roots and not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            raise SandboxError(f"Refusing to write back to {source}: it is outside the daemon's folders")
        return resolved

    def _owner(self) -> tuple[int, int]:
        owner = _numeric_user(self.user) or _numeric_user(UNPRIVILEGED_USER)
        assert owner is not None
        return owner

    # -- images -------------------------------------------------------------

    async def ensure_image(self, image: str) -> None:
        """Make sure the remote engine has ``image``, loading it from the daemon's own engine if needed.

        Nothing is pulled or built on the remote engine. An image the remote
        engine lacks is made sure of on the daemon's engine (the stand-in
        image is built there, others pulled as locally) and streamed across:
        ``docker save`` here piped into ``docker load`` there.
        """
        async with self._image_lock:
            if await self._has_image(image):
                return
            from .standin_image import ensure_image

            advice = (
                f"Copy it there: docker save {image} | DOCKER_HOST=<remote> docker load (or build it on that host)."
            )
            try:
                await ensure_image(self.docker, image, build_if_missing=self.build_if_missing)
            except SandboxUnavailable as e:
                raise SandboxUnavailable(
                    f"The remote Docker engine has no image {image!r}, and this host cannot provide it ({e}). {advice}"
                ) from None
            logger.info("image.loading_remote", extra={"image": image})
            await self._load(image)
            if not await self._has_image(image):
                raise SandboxUnavailable(f"The remote Docker engine still has no image {image!r}. {advice}")

    async def _has_image(self, image: str) -> bool:
        result = await self._cli("image", "inspect", "--format", "{{.Id}}", "--", image)
        return result.returncode == 0

    async def _load(self, image: str) -> None:
        """``docker save image`` on the daemon's engine piped into ``docker load`` on the remote one."""
        read_end, write_end = os.pipe()
        save = load = None
        try:
            try:
                save = await asyncio.create_subprocess_exec(
                    self._binary(),
                    "save",
                    "--",
                    image,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=write_end,
                    stderr=asyncio.subprocess.PIPE,
                )
                os.close(write_end)
                write_end = -1
                load = await self._stream("load", "--quiet", stdin=read_end, stdout=asyncio.subprocess.DEVNULL)
            except OSError as e:
                raise SandboxUnavailable(f"The Docker CLI cannot be run ({e.strerror})") from None
            os.close(read_end)
            read_end = -1
            assert save.stderr is not None and load.stderr is not None
            async with asyncio.timeout(self.transfer_timeout):
                save_err, load_err = await asyncio.gather(save.stderr.read(), load.stderr.read())
                save_code, load_code = await asyncio.gather(save.wait(), load.wait())
        except TimeoutError:
            raise SandboxUnavailable(
                f"Loading {image} into the remote engine took over {self.transfer_timeout} s"
            ) from None
        finally:
            for fd in (read_end, write_end):
                if fd >= 0:
                    os.close(fd)
            for proc in (save, load):
                if proc is not None:
                    await reap(proc)
        if save_code != 0 or load_code != 0:
            err = (save_err if save_code != 0 else load_err).decode(errors="replace").strip()
            raise SandboxUnavailable(f"Could not load {image} into the remote engine: {err}")

    # -- SandboxProvider ----------------------------------------------------

    def run_args(self, spec: SandboxSpec) -> list[str]:
        """The ``docker run`` arguments: the local provider's, with volumes instead of binds."""
        if spec.egress or spec.local_ports:
            # Never a fallback to an open network.
            raise SandboxError("Egress allowlists and local ports are not supported on a remote Docker engine yet")
        volumes = plan_volumes(spec)
        args = super().run_args(attrs.evolve(spec, mounts=()))
        extra: list[str] = []
        for volume in volumes:
            extra += ["--mount", volume.mount_arg(fill=False)]
        writable = [
            [
                str(v.source),
                v.target if not v.is_file else posixpath.join(v.target, v.member),
                v.is_file,
                list(v.keep),
                v.max_bytes,
                v.max_files,
            ]
            for v in volumes
            if not v.read_only
        ]
        extra += ["--label", f"{LABEL_WRITABLE}={json.dumps(writable)}"]
        cut = args.index("--")
        return [*args[:cut], *extra, *args[cut:]]

    async def start(self, spec: SandboxSpec) -> str:
        """Fill the run's volumes from the mounts' sources, then start the container."""
        volumes = plan_volumes(spec)
        self.run_args(spec)  # refuses what cannot run before anything is created
        for volume in volumes:
            if not volume.read_only:
                self._check_writable(volume.source)
        _checked_ref(spec.run_id, "run id")
        existing = await self._cli("inspect", "--format", "{{.Id}}", "--", f"haflow-{spec.run_id}")
        if existing.returncode == 0:
            raise SandboxError(f"Could not start the agent container: haflow-{spec.run_id} is already in use")
        self._starting.add(spec.run_id)
        try:
            await self._fill(spec, volumes)
            return await super().start(spec)
        except BaseException:
            await asyncio.shield(self._remove_volumes(spec.run_id))
            raise
        finally:
            self._starting.discard(spec.run_id)

    def _volume_labels(self, spec: SandboxSpec) -> list[str]:
        labels = [f"{LABEL_MISSION}={spec.mission_id}", f"{LABEL_RUN}={spec.run_id}"]
        if self.instance is not None:
            labels.append(f"{LABEL_INSTANCE}={self.instance}")
        return [arg for label in labels for arg in ("--label", label)]

    async def _fill(self, spec: SandboxSpec, volumes: list[_Volume]) -> None:
        if not volumes:
            return
        for volume in volumes:
            result = await self._cli("volume", "create", *self._volume_labels(spec), "--", volume.name)
            if result.returncode != 0:
                raise SandboxError(f"Could not create a volume on the remote engine: {result.error}")
        helper = f"haflow-{spec.run_id}-fill"
        args = ["create", "--name", helper, "--network", "none", "--label", f"{LABEL_FILL}={spec.run_id}"]
        if self.instance is not None:
            args += ["--label", f"{LABEL_INSTANCE}={self.instance}"]
        for volume in volumes:
            args += ["--mount", volume.mount_arg(fill=True)]
        args += ["--", spec.image, "true"]
        try:
            result = await self._cli(*args, limit=120.0)
            if result.returncode != 0 and _missing_image(result):
                await self.ensure_image(spec.image)
                result = await self._cli(*args, limit=120.0)
            if result.returncode != 0:
                raise SandboxError(f"Could not prepare the agent's files on the remote engine: {result.error}")
            uid, gid = self._owner()
            for volume in volumes:
                await self._copy_in(helper, volume, uid, gid)
        finally:
            await asyncio.shield(self._cli("rm", "--force", "--", helper))

    async def _copy_in(self, helper: str, volume: _Volume, uid: int, gid: int) -> None:
        with tempfile.TemporaryFile(prefix="haflow-in-") as stream:
            try:
                await asyncio.to_thread(pack, volume, stream, uid, gid)
            except OSError as e:
                raise SandboxError(f"Cannot read the folder to mount {volume.source}: {e.strerror}") from None
            stream.seek(0)
            proc = await self._stream(
                "cp", "-", f"{helper}:{volume.fill_parent}", stdin=stream, stdout=asyncio.subprocess.DEVNULL
            )
            try:
                assert proc.stderr is not None
                async with asyncio.timeout(self.transfer_timeout):
                    err = await proc.stderr.read()
                    code = await proc.wait()
            except TimeoutError:
                raise SandboxError(
                    f"Copying {volume.source} to the remote engine took over {self.transfer_timeout} s"
                ) from None
            finally:
                await reap(proc)
        if code != 0:
            raise SandboxError(
                f"Could not copy {volume.source} to the remote engine: {err.decode(errors='replace').strip()}"
            )

    async def wait(self, sandbox_id: str) -> int:
        """Wait for the exit, copy the writable mounts back, then return the exit code."""
        code = await super().wait(sandbox_id)
        await self._copy_back(sandbox_id)
        return code

    async def _copy_back(self, sandbox_id: str) -> None:
        result = await self._cli(
            "inspect", "--format", f'{{{{index .Config.Labels "{LABEL_WRITABLE}"}}}}', "--", sandbox_id
        )
        text = result.stdout.decode(errors="replace").strip()
        if result.returncode != 0 or not text or text == "<no value>":
            raise SandboxError(f"Lost track of the agent container's files: {result.error}")
        try:
            writable = [self._writable_entry(entry) for entry in json.loads(text)]
        except (ValueError, TypeError):
            raise SandboxError("The agent container's list of writable mounts is not ours") from None
        for source, target, is_file, keep, max_bytes, max_files in writable:
            if not target.startswith("/") or "\0" in target:
                raise SandboxError("The agent container's list of writable mounts is not ours")
            with tempfile.TemporaryDirectory(prefix="haflow-back-") as folder:
                archive = Path(folder) / "back.tar"
                await self._copy_out(sandbox_id, target, archive, max_bytes, max_files)
                member = posixpath.basename(target)
                if is_file:
                    await asyncio.to_thread(unpack_file, archive, member, source, max_bytes=max_bytes)
                else:
                    await asyncio.to_thread(
                        unpack_tree,
                        archive,
                        member,
                        source,
                        keep=tuple(keep),
                        max_bytes=max_bytes,
                        max_members=max_files,
                    )

    def _writable_entry(self, entry: list[object]) -> tuple[Path, str, bool, list[str], int, int]:
        """One entry of the writable-mounts label, with caps no larger than this provider's.

        Containers started before areas had caps carry four fields.
        """
        source, target, is_file, keep = entry[:4]
        caps = [int(c) for c in entry[4:6] if isinstance(c, int)]
        max_bytes = min([self.max_back_bytes, *caps[:1]])
        max_files = min([self.max_back_members, *caps[1:2]])
        if not isinstance(keep, list):
            raise TypeError("keep")
        return (
            self._check_writable(Path(str(source))),
            str(target),
            bool(is_file),
            [str(k) for k in keep],
            max_bytes,
            max_files,
        )

    async def _copy_out(self, sandbox_id: str, target: str, archive: Path, max_bytes: int, max_files: int) -> None:
        """``docker cp ctr:target -`` into ``archive``, killed once it exceeds the cap."""
        cap = max_bytes + 1024 * max_files + 1024 * 1024
        proc = await self._stream(
            "cp", f"{sandbox_id}:{target}", "-", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            err_task = asyncio.ensure_future(proc.stderr.read())
            written = 0
            async with asyncio.timeout(self.transfer_timeout):
                with archive.open("wb") as out:
                    while chunk := await proc.stdout.read(_READ_SIZE):
                        written += len(chunk)
                        if written > cap:
                            raise SandboxError(f"The agent's {target} is larger than {cap} bytes; not copied back")
                        await asyncio.to_thread(out.write, chunk)
                err = await err_task
                code = await proc.wait()
        except TimeoutError:
            raise SandboxError(f"Copying {target} back took over {self.transfer_timeout} s") from None
        finally:
            await reap(proc)
            if not err_task.done():
                err_task.cancel()
        if code != 0:
            raise SandboxError(
                f"Could not copy {target} back from the remote engine: {err.decode(errors='replace').strip()}"
            )

    async def remove(self, sandbox_id: str) -> None:
        """Remove the container and the run's volumes; quiet if already gone."""
        _checked_ref(sandbox_id, "sandbox id")
        run_id = await self._run_label(sandbox_id)
        await super().remove(sandbox_id)
        if run_id is not None:
            await self._remove_volumes(run_id)

    async def list(self) -> list[SandboxInfo]:
        """Every container of this instance (see :meth:`DockerProvider.list`).

        Volumes of this instance whose run has no container (a daemon that
        died while filling them) are removed on the way.
        """
        found = await super().list()
        if self.instance is not None:
            await self._sweep_volumes({info.run_id for info in found} | self._starting)
        return found

    async def _sweep_volumes(self, live: set[str]) -> None:
        filters = ["--filter", f"label={LABEL_RUN}", "--filter", f"label={LABEL_INSTANCE}={self.instance}"]
        result = await self._cli("volume", "ls", *filters, "--format", f'{{{{.Label "{LABEL_RUN}"}}}}')
        if result.returncode != 0:
            return
        for run_id in sorted(set(result.stdout.decode(errors="replace").split()) - live):
            logger.info("sandbox.orphan_volumes_removed", extra={"run_id": run_id})
            await self._remove_volumes(run_id)

    async def _remove_volumes(self, run_id: str) -> None:
        filters = ["--filter", f"label={LABEL_RUN}={run_id}"]
        if self.instance is not None:
            filters += ["--filter", f"label={LABEL_INSTANCE}={self.instance}"]
        with contextlib.suppress(SandboxError):
            await self._cli("rm", "--force", "--", f"haflow-{run_id}-fill")
            found = await self._cli("volume", "ls", "--quiet", *filters)
            names = found.stdout.decode(errors="replace").split()
            if found.returncode == 0 and names:
                result = await self._cli("volume", "rm", "--force", "--", *names)
                if result.returncode != 0 and not _gone(result):
                    logger.warning("sandbox.volumes_left", extra={"run_id": run_id, "error": result.error})
