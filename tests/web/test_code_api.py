"""Code missions' routes: linking projects over HTTP, and the review routes refusing missions without one."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import AppClient, api, create_mission
from tests.workspaces.conftest import make_repo


class TestProjects:
    async def test_link_list_get_unlink(self, client: AppClient, tmp_path: Path) -> None:
        """A linked repository is listed and found by id until it is unlinked, which leaves it untouched."""
        repo = make_repo(tmp_path / "repo")
        status, body = await api(client, "POST", "/api/projects", json={"path": str(repo), "name": "Repo"})
        assert status == 201, body
        project = body["data"]
        assert (project["name"], project["path"], project["default_branch"]) == ("Repo", str(repo), "main")
        project_id = project["project_id"]

        assert (await api(client, "GET", "/api/projects"))[1]["data"] == [project]
        assert (await api(client, "GET", f"/api/projects/{project_id}"))[1]["data"] == project

        status, body = await api(client, "DELETE", f"/api/projects/{project_id}")
        assert (status, body["data"]) == (200, None)
        assert (await api(client, "GET", f"/api/projects/{project_id}"))[0] == 404
        assert (repo / "README.md").read_text() == "hello\n"

    async def test_linking_twice_is_409(self, client: AppClient, tmp_path: Path) -> None:
        """The same repository cannot be linked twice; the error names the first project."""
        repo = make_repo(tmp_path / "repo")
        _, first = await api(client, "POST", "/api/projects", json={"path": str(repo)})
        status, body = await api(client, "POST", "/api/projects", json={"path": str(repo)})
        assert status == 409
        assert first["data"]["project_id"] in body["error"]

    async def test_not_a_repository_is_400(self, client: AppClient, tmp_path: Path) -> None:
        """A folder that is not a git work tree is refused."""
        (tmp_path / "plain").mkdir()
        status, _ = await api(client, "POST", "/api/projects", json={"path": str(tmp_path / "plain")})
        assert status == 400

    async def test_relative_path_is_400(self, client: AppClient) -> None:
        """A relative path is refused."""
        status, _ = await api(client, "POST", "/api/projects", json={"path": "repo"})
        assert status == 400

    async def test_unknown_project_is_404(self, client: AppClient) -> None:
        """Getting or unlinking an unknown project is 404."""
        assert (await api(client, "GET", "/api/projects/p-00000000"))[0] == 404
        assert (await api(client, "DELETE", "/api/projects/p-00000000"))[0] == 404


class TestReviewRoutes:
    async def test_document_mission_has_no_git(self, client: AppClient) -> None:
        """A mission without a project answers 409 on every review route."""
        mission_id = (await create_mission(client))["mission_id"]
        for path in ("git-status", "git-diff", "commits", "patch"):
            status, body = await api(client, "GET", f"/api/missions/{mission_id}/{path}")
            assert status == 409, path
            assert body["error"] == "This mission has no project (it is not a code mission)"

    async def test_unknown_mission_is_404(self, client: AppClient) -> None:
        """A review route of an unknown mission is 404."""
        status, _ = await api(client, "GET", "/api/missions/m-00000000/git-status")
        assert status == 404
