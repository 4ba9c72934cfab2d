"""The Docker wing: the local provider (:mod:`.local`), the remote one (:mod:`.remote`) and what they share.

:mod:`.exits` (every run's exit from one ``docker events`` stream),
:mod:`.standin_image` (the stand-in agent image, built offline),
:mod:`.agent_images` (real CLIs' images, built offline) and
:mod:`.egress_runs` (a networked run's proxy and sidecar). Nothing here
imports :mod:`haflowd.sandbox.kubernetes`; what both wings need lives in
:mod:`haflowd.sandbox.protocol`.
"""
