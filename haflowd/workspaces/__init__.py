"""Workspaces: what a step sees (artifacts folder, a git work tree), behind :class:`Workspace`."""
