"""The Ray executor: each student (model, optimizer, generation backend) in its own Ray actor.

When one process or one GPU cannot hold every student (2 to 8), each student goes to an actor placed by
Ray with ``ray.num_cpus_per_student`` / ``ray.num_gpus_per_student``; the trainer stays in the calling
process (the worker) and drives them all through ``RemoteStudent`` proxies. A proxy has the runtime's
methods, so the trainer, the observer and the controls work unchanged: everything the dashboard
shows for a local run it shows for a Ray run.

What crosses the boundary is small: token ids, texts, per-token float lists, and for the
``one_way`` baseline the frozen peer's logits over the tutee's rollouts, which go from the peer's
actor to the tutee's through Ray's object store without passing through the coordinator. The
initial weights (a CPU snapshot) and the EMA teacher live in each actor with its student, so the KL
anchor, the EMA teacher and the one_way baseline's frozen teacher work unchanged. The
proxy keeps a copy of the student's tokenizer and chat template variables
(``StudentConfig.chat_template_kwargs``), so rendering and decoding are local and render what the
actor would.

Inside an actor the student is built by the same ``build.build_student`` as locally (warm-up
cache included; ``cache_dir`` and checkpoint directories must be reachable from every node, i.e.
on shared storage for a multi-node cluster). Torch uses as many threads as CPUs the actor holds.

Failure: an actor that dies (node lost, out of memory, killed) makes the next call raise
``StudentActorLost`` naming the student; the run fails with that message and, resumed, restarts
from its last checkpoint with fresh actors. Every call also has a deadline
(``ray.actor_timeout_s``) so a stuck actor fails the run instead of hanging it.

Cluster: ``ray.address`` joins an existing cluster (``ray start --head`` on one machine, ``ray
start --address=HEAD:6379`` on the others, then ``address: auto`` on the head); without it a
local Ray is started with ``ray.local_num_cpus`` CPUs and no dashboard.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from opcod_core.config import RunConfig
from opcod_core.data.types import SplitDataset
from opcod_core.student_types import StepOutput, TextOps

try:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ValueError("executor: 'ray' needs the ray package (pip install 'opcod[ray]')") from exc


class StudentActorLost(RuntimeError):
    """A student's actor died or stopped answering."""


class _StudentActor:
    """Holds one ``StudentRuntime``; ``call`` runs any of its methods."""

    def __init__(self, config_json: str, index: int, data: SplitDataset, cache_dir: str | None,
                 aliases: dict[str, str] | None, threads: int) -> None:
        from opcod_core.build import build_student

        torch.set_num_threads(max(1, threads))
        config = RunConfig.from_json(config_json)
        self.rt = build_student(index, config, data, Path(cache_dir) if cache_dir else None, aliases)

    def describe(self) -> tuple[str, object, int, dict]:
        return self.rt.name, self.rt.tokenizer, self.rt.micro_batch, self.rt.chat_template_kwargs

    def call(self, method: str, *args, **kwargs):
        return getattr(self.rt, method)(*args, **kwargs)


#: The Ray this module started or joined for the current run ("local" or the cluster address), or None.
_attached: str | None = None


def ensure_ray(config: RunConfig) -> None:
    """Start or join the run's Ray. A Ray this module attached for an earlier run with another target is shut
    down first, so a run never inherits another run's cluster; a Ray the caller initialised itself is used
    as it is."""
    global _attached
    rc = config.ray
    target = rc.address or "local"
    if ray.is_initialized():
        if _attached is None or _attached == target:
            return
        ray.shutdown()
    if rc.address:
        ray.init(address=rc.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=rc.local_num_cpus, include_dashboard=False, log_to_driver=False)
    _attached = target


def release_ray() -> None:
    """Shut down the Ray that ``ensure_ray`` started or joined (at the end of a run: a long-lived worker
    process does not stay attached to a cluster between runs)."""
    global _attached
    if _attached is not None and ray.is_initialized():
        ray.shutdown()
    _attached = None


def ray_students(config: RunConfig, data: SplitDataset, cache_dir: Path | None = None,
                 aliases: dict[str, str] | None = None) -> dict[str, "RemoteStudent"]:
    ensure_ray(config)
    rc = config.ray
    actor_cls = ray.remote(_StudentActor)
    threads = max(1, math.floor(rc.num_cpus_per_student))
    handles = [actor_cls.options(num_cpus=rc.num_cpus_per_student, num_gpus=rc.num_gpus_per_student,
                                 max_restarts=0, max_task_retries=0)
               .remote(config.to_json(), i, data, str(cache_dir) if cache_dir else None, aliases, threads)
               for i in range(len(config.students))]
    students: dict[str, RemoteStudent] = {}
    for st, handle in zip(config.students, handles, strict=True):
        students[st.name] = RemoteStudent(st.name, handle, rc.actor_timeout_s)
    return students


class RemoteStudent(TextOps):
    """Proxy for a student living in a Ray actor: the ``StudentRuntime`` interface, remotely."""

    def __init__(self, name: str, handle, timeout_s: float) -> None:
        self.name = name
        self.handle = handle
        self.timeout_s = timeout_s
        # the tokenizer and the chat template variables: rendering is local, and identical to the actor's
        _, self.tokenizer, self.micro_batch, self.chat_template_kwargs = self._get(handle.describe.remote())

    # --- plumbing ----------------------------------------------------------------------------------
    def _get(self, ref):
        try:
            return ray.get(ref, timeout=self.timeout_s)
        except RayActorError as exc:
            raise StudentActorLost(f"student {self.name}: its Ray actor died ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); the run can "
                                   "resume from its last checkpoint") from exc
        except GetTimeoutError as exc:
            raise StudentActorLost(f"student {self.name}: its Ray actor did not answer within "
                                   f"{self.timeout_s:g} s (ray.actor_timeout_s)") from exc
        except RayTaskError as exc:
            raise exc.as_instanceof_cause() from None

    def _call(self, method: str, *args, **kwargs):
        return self._get(self.handle.call.remote(method, *args, **kwargs))

    # --- the runtime's interface ------------------------------------------------------------------
    def sample(self, prompts, params):
        return self._call("sample", prompts, params)

    def sample_with_checkpoint(self, checkpoint_dir, prompts, params):
        return self._call("sample_with_checkpoint", str(checkpoint_dir), prompts, params)

    def divergence_between(self, student_prefixes, teacher_prefixes, rollouts, loss_cfg, temperature: float = 1.0):
        return self._call("divergence_between", student_prefixes, teacher_prefixes, rollouts, loss_cfg, temperature)

    def next_token_distribution(self, prefix, candidates):
        return self._call("next_token_distribution", prefix, candidates)

    def token_logprobs(self, prefixes, rollouts):
        return self._call("token_logprobs", prefixes, rollouts)

    def distill_step(self, examples, loss_cfg, teacher: "RemoteStudent | None" = None) -> StepOutput:
        if teacher is None:
            return self._call("distill_step", examples, loss_cfg)
        # the frozen peer's logits go actor to actor through the object store
        logits_ref = teacher.handle.call.remote("teacher_logits", examples, self.micro_batch, "reference")
        return self._get(self.handle.call.remote("distill_step", examples, loss_cfg, None, logits_ref))

    def policy_gradient_step(self, prefixes, rollouts, advantages, loss_cfg=None) -> StepOutput:
        return self._call("policy_gradient_step", prefixes, rollouts, advantages, loss_cfg)

    def sft_step(self, prompts, targets, lr=None, micro_batch=None) -> float:
        return self._call("sft_step", prompts, targets, lr, micro_batch)

    def reset_optimizer(self) -> None:
        self._call("reset_optimizer")

    def sync_seconds(self) -> float | None:
        return self._call("sync_seconds")

    def save(self, directory: Path, with_optimizer: bool = True, previous: Path | None = None) -> None:
        self._call("save", Path(directory), with_optimizer, Path(previous) if previous else None)

    def load(self, directory: Path) -> None:
        self._call("load", Path(directory))

    def close(self) -> None:
        try:
            self._call("close")
        except StudentActorLost:
            pass
        ray.kill(self.handle)
