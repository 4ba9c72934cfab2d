"""The Kubernetes wing (EXPERIMENTAL): Jobs in a cluster, their areas through the daemon's transfer endpoints.

:mod:`.provider` (the provider on the optional ``kubernetes_asyncio``, imported
only when it runs), :mod:`.manifests` (a run's Job, Secret and NetworkPolicy as
plain dicts) and :mod:`.transfers` (one-time tickets of pods fetching and
handing back areas; the web app serves them, so this package must not import
``kubernetes_asyncio`` when loaded). Nothing here imports
:mod:`haflowd.sandbox.docker`; what both wings need lives in
:mod:`haflowd.sandbox.protocol`.
"""
