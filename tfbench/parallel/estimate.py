"""What a ring all-reduce of the gradients costs on N machines, and why VGG19 scales worse than conv-only networks.

Part of exercise 5.3 (:mod:`tfbench.distributed`).  In synchronous data parallelism every
step ends with an all-reduce of every gradient.  A *ring* all-reduce (what
``MultiWorkerMirroredStrategy``'s ``RING`` collectives and NCCL do) sends each of the N
machines' gradients around in N chunks: a reduce-scatter then an all-gather, each N-1 hops
of 1/N of the bytes, so every machine sends and receives::

    2 (N - 1) / N  x  gradient bytes          per step, over its own link

which approaches twice the gradient size, independent of N: the time per step does not
shrink with more machines, while the compute per machine does (fixed per-machine batch) or
stays (fixed global batch: it shrinks).  We ignore latency (2(N-1) messages) and overlap of
communication with the backward pass, so this is the no-overlap upper bound.

VGG19 in float32 has 143,667,240 parameters, 574.7 MB of gradients per step, 71.5% of them in
fc6 (25088 x 4096) alone, and its fully connected layers do under 1% of its multiply-adds.
Its conv stack alone (a conv-only network with the same compute) has 20,024,384 parameters
(80 MB): the same arithmetic per step with 7x fewer bytes to all-reduce.  That ratio,
bytes to all-reduce per multiply-add, is what decides how well data parallelism scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tfbench.plumbing.errors import UserError

BYTES_PER_PARAM = 4  # float32 gradients


@dataclass(frozen=True)
class ModelCost:
    """Parameters and forward multiply-adds per example of one network."""

    name: str
    params: int
    macs: int
    note: str = ""

    @property
    def gradient_bytes(self) -> int:
        """Bytes all-reduced per step (float32 gradients)."""
        return self.params * BYTES_PER_PARAM


def vgg19_costs(input_size: int = 224) -> list[ModelCost]:
    """VGG19, its conv stack alone, and its fc layers alone, from ``tfbench.models.vgg19.layer_specs``."""
    from tfbench.models import vgg19

    specs = vgg19.layer_specs(input_size=input_size)
    conv_params = conv_macs = fc_params = fc_macs = 0
    for spec in specs:
        if spec.kind == "conv":
            layer_block = int(spec.name[4])  # conv<block>_<n>
            side = input_size >> (layer_block - 1)
            conv_params += spec.params
            conv_macs += side * side * spec.kernel_shape[0] * spec.kernel_shape[1] * spec.kernel_shape[2] \
                * spec.kernel_shape[3]
        else:
            fc_params += spec.params
            fc_macs += spec.kernel_shape[0] * spec.kernel_shape[1]
    fc6 = next(s for s in specs if s.name == "fc6")
    return [
        ModelCost("vgg19", conv_params + fc_params, conv_macs + fc_macs,
                  f"fc6 alone: {fc6.params / (conv_params + fc_params):.1%} of the bytes"),
        ModelCost("vgg19-conv-only", conv_params, conv_macs, "the 16 conv layers: same compute, no fc"),
    ]


def lenet5_cost() -> ModelCost:
    """LeNet-5 (32x32x1 input) from ``tfbench.models.lenet5.LAYERS``."""
    from tfbench.models import lenet5

    params = macs = 0
    side = lenet5.INPUT_SHAPE[0]
    for spec in lenet5.LAYERS:
        kernel = 1
        for d in spec.kernel_shape:
            kernel *= d
        params += kernel + spec.bias_shape[0]
        if spec.kind == "conv":
            side = side - spec.kernel_shape[0] + 1
            macs += side * side * kernel
            side //= 2
        else:
            macs += kernel
    return ModelCost("lenet5", params, macs)


def ring_allreduce_seconds(num_bytes: float, workers: int, link_gbps: float) -> float:
    """Time of one ring all-reduce of ``num_bytes`` among ``workers`` machines with ``link_gbps`` links."""
    if workers <= 1:
        return 0.0
    return 2 * (workers - 1) / workers * num_bytes / (link_gbps * 1e9 / 8)


def estimate_rows(models: list[ModelCost], workers: list[int], *, link_gbps: float, device_tflops: float,
                  batch_per_worker: int) -> list[dict]:
    """Per model and N: bytes sent per machine, all-reduce ms, compute ms and scaling efficiency (no overlap).

    Compute per step = 3 x forward multiply-adds x 2 FLOPs x batch / device speed (forward plus
    a backward pass of about twice the forward's work).
    """
    rows = []
    for model in models:
        compute_s = 3 * 2 * model.macs * batch_per_worker / (device_tflops * 1e12)
        for n in workers:
            comm_s = ring_allreduce_seconds(model.gradient_bytes, n, link_gbps)
            rows.append({"model": model.name, "workers": n, "gradient_MB": model.gradient_bytes / 1e6,
                         "sent_per_machine_MB": 2 * (n - 1) / n * model.gradient_bytes / 1e6 if n > 1 else 0.0,
                         "allreduce_ms": comm_s * 1e3, "compute_ms": compute_s * 1e3,
                         "efficiency": compute_s / (compute_s + comm_s),
                         "speedup": n * compute_s / (compute_s + comm_s)})
    return rows


def format_estimate(rows: list[dict], models: list[ModelCost], *, link_gbps: float, device_tflops: float,
                    batch_per_worker: int) -> str:
    """The printed explanation and table."""
    lines = [f"ring all-reduce estimate: {link_gbps:g} Gbit/s links, {device_tflops:g} TFLOP/s per machine, "
             f"{batch_per_worker} examples per machine per step, no overlap of communication and compute"]
    for m in models:
        lines.append(f"  {m.name:16s} {m.params:>12,d} params = {m.gradient_bytes / 1e6:8.1f} MB of fp32 gradients, "
                     f"{m.macs / 1e6:9.2f} M multiply-adds/example, {m.gradient_bytes / max(m.macs, 1) * 1e3:8.2f} "
                     f"bytes per 1000 MACs{'  (' + m.note + ')' if m.note else ''}")
    lines.append(f"  {'model':16s} {'N':>3s} {'sent/machine MB':>15s} {'all-reduce ms':>13s} {'compute ms':>10s} "
                 f"{'efficiency':>10s} {'speed-up':>8s}")
    for r in rows:
        lines.append(f"  {r['model']:16s} {r['workers']:3d} {r['sent_per_machine_MB']:15.1f} {r['allreduce_ms']:13.1f} "
                     f"{r['compute_ms']:10.1f} {r['efficiency']:10.1%} {r['speedup']:8.2f}")
    return "\n".join(lines)


def estimate_table(link_gbps: float, device_tflops: float = 15.0, batch_per_worker: int = 32,
                   machines: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> str:
    """The table ``estimate`` prints (and ``train`` after training): VGG19, its conv stack and LeNet-5 on N machines."""
    if link_gbps <= 0 or device_tflops <= 0 or batch_per_worker < 1 or min(machines) < 1:
        raise UserError("--link-gbps and --device-tflops must be positive, --batch-per-worker and N at least 1")
    models = [*vgg19_costs(), lenet5_cost()]
    rows = estimate_rows(models, list(machines), link_gbps=link_gbps, device_tflops=device_tflops,
                         batch_per_worker=batch_per_worker)
    return format_estimate(rows, models, link_gbps=link_gbps, device_tflops=device_tflops,
                           batch_per_worker=batch_per_worker)
