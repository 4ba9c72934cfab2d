"""The HTTP face of the daemon: app factory, routes, guards, OpenAPI, the bundled UI."""
