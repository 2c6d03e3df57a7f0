"""The report :func:`tfbench.inspect_model` returns: numbers as attributes, text, HTML and JSON.

Every section is optional (``quick`` fills only the counts and the memory estimate); what was not
measured is ``None`` and says so in the text, never a zero.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from tfbench.models.counting import Complexity
from tfbench.reporting.tables import markdown_table, si


@dataclass
class InspectReport:
    """Everything ``python -m tfbench.inspect`` found out about one model."""

    model: str
    source: str
    input_shape: tuple[int, ...]
    batch: int
    counts: Complexity | None  # per-layer counts (None: not a Keras model, no layers to count)
    params: int
    trainable_params: int
    non_trainable_params: int
    profiler: dict[str, Any] = field(default_factory=dict)
    memory: Any = None  # memory.MemoryReport
    modes: Any = None  # modes.ModesReport
    grappler: Any = None  # rewrites.GrapplerReport
    roofline: dict[str, Any] | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tf_log: Any = None  # tf_log.LogSummary: what TensorFlow wrote to stderr during the report
    run_dir: str | None = None
    json_path: str | None = None

    # -- the totals, as attributes
    def _total(self, key: str) -> int | None:
        return self.counts.total(key) if self.counts is not None else None

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates of one example (counted layers)."""
        return self._total("macs")

    @property
    def mults(self) -> int | None:
        """All multiplications of one example."""
        return self._total("mults")

    @property
    def adds(self) -> int | None:
        """All additions of one example."""
        return self._total("adds")

    @property
    def neurons(self) -> int | None:
        """Outputs of the weighted-sum layers (conv, dense, attention) for one example."""
        return self._total("neurons")

    @property
    def profiler_flops(self) -> int | None:
        """TensorFlow's profiler count of the inference graph (batch 1)."""
        return self.profiler.get("total_flops") if self.profiler else None

    @property
    def uncounted(self) -> list[str]:
        """``Kind x N (what)`` per layer type with calls whose arithmetic could not be counted in full."""
        return self.counts.uncounted() if self.counts is not None else []

    def to_json(self) -> dict[str, Any]:
        """Every number, as plain JSON types."""
        roof = None
        if self.roofline:
            roof = {k: v for k, v in self.roofline.items() if k != "points"}
        return {"model": self.model, "source": self.source, "input_shape": list(self.input_shape), "batch": self.batch,
                "params": self.params, "trainable_params": self.trainable_params,
                "non_trainable_params": self.non_trainable_params, "macs": self.macs, "mults": self.mults,
                "adds": self.adds, "neurons": self.neurons, "uncounted": self.uncounted,
                "counts": self.counts.to_json() if self.counts is not None else None, "profiler": self.profiler,
                "memory": self.memory.to_json() if self.memory is not None else None,
                "modes": self.modes.to_json() if self.modes is not None else None,
                "grappler": self.grappler.to_json() if self.grappler is not None else None,
                "roofline": roof, "notes": self.notes, "run_dir": self.run_dir,
                "tf_log": self.tf_log.to_json() if self.tf_log is not None else None}

    # -- text
    def sections(self) -> dict[str, str]:
        """Section title -> markdown text (the terminal prints them, TensorBoard shows them as Text cards)."""
        return sections(self)

    def __repr__(self) -> str:
        macs = f"{si(self.macs)} MACs" if self.macs is not None else "MACs not counted"
        return (f"<InspectReport {self.model} ({self.source}) input {'x'.join(map(str, self.input_shape))}: "
                f"{self.params:,} params ({self.trainable_params:,} trainable), {macs}"
                + (f", uncounted: {', '.join(self.uncounted)}" if self.uncounted else "") + ">")

    def __str__(self) -> str:
        return "\n\n".join(f"== {title} ==\n{text}" for title, text in self.sections().items())

    def _repr_html_(self) -> str:
        parts = [f"<h3>{html.escape(self.model)}</h3>"]
        for title, text in self.sections().items():
            parts.append(f"<h4>{html.escape(title)}</h4><pre>{html.escape(text)}</pre>")
        return "\n".join(parts)


# -- the sections as text: markdown tables the terminal prints and TensorBoard's Text dashboard renders

def _n(v: int | float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}"


def summary(r: InspectReport) -> str:
    """Size and work in a few lines, the cross-check, and any layer left uncounted."""
    lines = [f"model: {r.model} ({r.source}), input {'x'.join(map(str, r.input_shape))} (batch {r.batch})",
             f"parameters: {r.params:,} ({r.trainable_params:,} trainable, {r.non_trainable_params:,} not)"]
    if r.counts is not None:
        t = r.counts.totals()
        lines.append(f"per example: {t['macs']:,} MACs = {si(t['macs'])}; {t['mults']:,} multiplications, "
                     f"{t['adds']:,} additions; {t['neurons']:,} neurons, {t['pool_neurons']:,} pooling outputs")
        if r.counts.published_params:
            same = r.counts.published_params == t["params"]
            lines.append(f"published for the zoo's model of this name: {r.counts.published_params:,} trainable params"
                         + (f", about {si(r.counts.published_macs)} MACs" if r.counts.published_macs else "")
                         + f" ({r.counts.source}); "
                         + ("this model matches" if same else "this model differs (another variant of it)"))
    else:
        lines.append("per-layer counts: none (not a Keras model: no layers to count); the profiler's count below")
    if r.profiler:
        lines += cross_check_lines(r)
    if r.uncounted:
        lines.append(f"UNCOUNTED (by layer type; their other work is in the totals): {'; '.join(r.uncounted)}")
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def _agreement(rel: float | None) -> str:
    if rel is None:
        return "nothing to compare"
    return "equal" if rel == 0 else f"{rel:.2%} apart"


def cross_check_lines(r: InspectReport) -> list[str]:
    """The model's own graph against the rules, the profiler against the graph on the ops it counts, its blind spots."""
    from tfbench.models.cross_check import cross_check

    check = cross_check(r.macs, r.profiler)
    lines = [f"TF profiler, inference graph at batch 1: {r.profiler['total_flops']:,} FLOPs"]
    if check["graph_macs"] is not None:
        if r.counts is not None:
            lines.append(f"  the model's traced graph (function bodies, every loop iteration): {check['graph_macs']:,} "
                         f"MACs; the layer rules: {check['our_macs']:,} ({_agreement(check['rules_vs_graph'])})")
        else:
            lines.append(f"  the model's traced graph (function bodies, every loop iteration): {check['graph_macs']:,} "
                         "MACs")
    if check["compared_ops"]:
        ops = ", ".join(check["compared_ops"])
        lines.append(f"  on the ops the profiler counts ({ops}): graph {check['graph_on_compared']:,} MACs, profiler/2 "
                     f"{check['profiler_on_compared']:,.0f} ({_agreement(check['profiler_vs_graph'])})")
    lines += [f"  blind spot: {b}" for b in check["blind_spots"]]
    if check["graph_unknown_ops"]:
        lines.append("  ops the graph count does not know: " + ", ".join(
            f"{op} x {n}" for op, n in check["graph_unknown_ops"].items()))
    return lines


def layers(r: InspectReport) -> str:
    """The per-layer table, like torchinfo's."""
    if r.counts is None:
        return "(no Keras layers)"
    rows = [(c.name, c.kind + ("" if c.counted else " (UNCOUNTED)") + (" (graph)" if c.method == "graph" else ""),
             "x".join(map(str, c.output_shape)),
             _n(c.params), _n(c.non_trainable_params), _n(c.neurons), _n(c.macs), _n(c.mults), _n(c.adds))
            for c in r.counts.layers]
    t = r.counts.totals()
    rows.append(("**total**", "", "", _n(t["params"]), _n(t["non_trainable_params"]), _n(t["neurons"]),
                 _n(t["macs"]), _n(t["mults"]), _n(t["adds"])))
    return markdown_table(["layer", "type", "output shape", "params", "non-trainable", "neurons", "MACs", "mults",
                           "adds"], rows)


def memory(r: InspectReport) -> str:
    """torchsummary's estimate beside the measured RSS growth."""
    m = r.memory
    text = markdown_table(["MB (batch %d)" % m.batch, "value"], m.rows())
    return text + (f"\n\n{m.note}" if m.note else "")


def modes(r: InspectReport) -> str:
    """Eager / tf.function / XLA / bfloat16 side by side, under the machine header."""
    from tfbench import timing

    m = r.modes
    rows = [(row.mode, "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.3g}", _n(row.median_ms),
             _n(row.p10_ms), _n(row.p90_ms), row.note) for row in m.rows]
    text = markdown_table(["mode", "max abs diff vs eager", "median ms", "p10 ms", "p90 ms", "note"], rows)
    eager, function = m.row("eager"), m.row("tf.function")
    lines = [timing.machine_header(r.machine) if r.machine else "", "",
             f"batch {m.batch}, {m.repeats} rounds round robin (warm-ups excluded); a shared machine's numbers "
             "are noisy", "", text]
    if eager and function and eager.median_ms and function.median_ms:
        lines.append(f"\ntf.function is {eager.median_ms / function.median_ms:.2f}x eager")
    if m.failures:
        lines.append(f"\ngrappler failed while these ran ({', '.join(m.failures)}): the tf.function rows timed the "
                     "graph TensorFlow ran after that failure (see the grappler section)")
    if m.bfloat16_skipped:
        lines.append(f"\nbfloat16 skipped: {m.bfloat16_skipped}")
    return "\n".join(lines)


def grappler(r: InspectReport) -> str:
    """Op counts before/after grappler, fused nodes, and the passes that changed the graph."""
    g = r.grappler
    lines = [f"{g.nodes_before} nodes before grappler, {g.nodes_after} after"]
    if g.failures:
        lines.append("FAILED in TensorFlow's log: " + "; ".join(
            f"{name} x {f['count']} ({f['message'][:200]})" for name, f in g.failures.items()))
        if g.failing_pass:
            lines.append(f"the failures go away with the {g.failing_pass} pass off: {g.failing_pass} breaks this "
                         "graph (a TensorFlow bug; --no-ablate still finds it)")
        if g.unoptimised:
            lines.append("TensorFlow then ignores grappler's result: the graph that runs (and every tf.function "
                         "timing) is the graph as traced, not optimised")
    lines += ["", g.markdown]
    if g.passes:
        changed = g.changed_passes()
        lines += ["", "with one pass off (the optimised graph compared with all passes on):"]
        lines += [f"- {p['pass_off']}: {p['difference_vs_all_on']}" for p in changed] or ["- no pass changed it"]
        same = [p["pass_off"] for p in g.passes if p not in changed]
        if same:
            lines.append(f"- no change without: {', '.join(same)}")
    return "\n".join(lines)


def roofline(r: InspectReport) -> str:
    """The peaks and the layers furthest below the roof."""
    from tfbench.inspection.roofline import below_roof

    peaks = r.roofline["peaks"]
    ridge = peaks["float32_gflops"] / peaks["bandwidth_gb_per_s"]
    rows = [(x["name"], x["kind"], f"{x['flops'] / 1e6:.2f}", f"{x['intensity']:.2f}", f"{x['median_ms']:.3f}",
             f"{x['gflops']:.1f}", f"{x['bound_gflops']:.1f}", f"{x['of_bound']:.0%}",
             "memory" if x["memory_bound"] else "compute") for x in below_roof(r.roofline["rows"])]
    head = (f"peaks measured in the same rounds: float32 matmul {peaks['float32_gflops']:.0f} GFLOP/s, bfloat16 "
            f"{peaks['bfloat16_gflops']:.0f} GFLOP/s, add bandwidth {peaks['bandwidth_gb_per_s']:.1f} GB/s; ridge "
            f"{ridge:.1f} FLOP/byte. Layers furthest below their roof (batch {r.batch}):\n\n")
    return head + markdown_table(["layer", "kind", "MFLOP", "FLOP/B", "ms", "GFLOP/s", "roof GFLOP/s", "of roof",
                                  "bound"], rows)


def sections(r: InspectReport) -> dict[str, str]:
    """Title -> text of every section the report has."""
    out = {"summary": summary(r), "layers": layers(r)}
    if r.memory is not None:
        out["memory"] = memory(r)
    if r.modes is not None:
        out["eager / tf.function / XLA"] = modes(r)
    if r.grappler is not None:
        out["grappler"] = grappler(r)
    if r.roofline:
        out["roofline"] = roofline(r)
    return out
