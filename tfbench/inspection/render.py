"""The report's sections as text: markdown tables the terminal prints and TensorBoard's Text dashboard renders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfbench.summaries import markdown_table

if TYPE_CHECKING:
    from tfbench.inspection.report import InspectReport


def _n(v: int | float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}"


def summary(r: InspectReport) -> str:
    """Size and work in a few lines, the profiler's cross-check, and any layer left uncounted."""
    from tfbench.inspection.report import _si
    from tfbench.models.counting import profiler_cross_check

    lines = [f"model: {r.model} ({r.source}), input {'x'.join(map(str, r.input_shape))} (batch {r.batch})",
             f"parameters: {r.params:,} ({r.trainable_params:,} trainable, {r.non_trainable_params:,} not)"]
    if r.counts is not None:
        t = r.counts.totals()
        lines.append(f"per example: {t['macs']:,} MACs = {_si(t['macs'])}; {t['mults']:,} multiplications, "
                     f"{t['adds']:,} additions; {t['neurons']:,} neurons, {t['pool_neurons']:,} pooling outputs")
        if r.counts.published_params:
            same = r.counts.published_params == t["params"]
            lines.append(f"published for the zoo's model of this name: {r.counts.published_params:,} trainable params"
                         + (f", about {_si(r.counts.published_macs)} MACs" if r.counts.published_macs else "")
                         + f" ({r.counts.source}); "
                         + ("this model matches" if same else "this model differs (another variant of it)"))
    else:
        lines.append("per-layer counts: none (not a Keras model: no layers to count); the profiler's count below")
    if r.profiler:
        lines.append(f"TF profiler, inference graph at batch 1: {r.profiler['total_flops']:,} FLOPs")
        if r.counts is not None:
            check = profiler_cross_check(r.counts, r.profiler)
            rel = check["relative_difference"]
            lines.append(f"  conv/dense MACs: ours {check['our_macs']:,} vs profiler/2 {check['profiler_macs']:,.0f}"
                         + (f" ({rel:.2%} apart)" if rel is not None else " (the profiler counts none of them)"))
    if r.uncounted:
        lines.append(f"UNCOUNTED (no counting rule; not in the totals): {', '.join(r.uncounted)}")
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def layers(r: InspectReport) -> str:
    """The per-layer table, like torchinfo's."""
    if r.counts is None:
        return "(no Keras layers)"
    rows = [(c.name, c.kind + ("" if c.counted else " (UNCOUNTED)"), "x".join(map(str, c.output_shape)),
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
    from tfbench import bench

    m = r.modes
    rows = [(row.mode, "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.3g}", _n(row.median_ms),
             _n(row.p10_ms), _n(row.p90_ms), row.note) for row in m.rows]
    text = markdown_table(["mode", "max abs diff vs eager", "median ms", "p10 ms", "p90 ms", "note"], rows)
    eager, function = m.row("eager"), m.row("tf.function")
    lines = [bench.machine_header(r.machine) if r.machine else "", "",
             f"batch {m.batch}, {m.repeats} rounds round robin (warm-ups excluded); a shared machine's numbers "
             "are noisy", "", text]
    if eager and function and eager.median_ms and function.median_ms:
        lines.append(f"\ntf.function is {eager.median_ms / function.median_ms:.2f}x eager")
    if m.bfloat16_skipped:
        lines.append(f"\nbfloat16 skipped: {m.bfloat16_skipped}")
    return "\n".join(lines)


def grappler(r: InspectReport) -> str:
    """Op counts before/after grappler, fused nodes, and the passes that changed the graph."""
    g = r.grappler
    lines = [f"{g.nodes_before} nodes before grappler, {g.nodes_after} after", "", g.markdown]
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
