"""opcod_core: On-Policy Co-Distillation (OPCoD) as a library, usable without the web app.

Two students tutor each other: each is trained on its own on-policy rollouts against a
self-teacher that sees a correct sibling rollout and the peer's anchored feedback. See
``opcod_core.trainer`` for the maths and every place where we chose what the paper leaves open.
"""

__version__ = "0.1.0"
