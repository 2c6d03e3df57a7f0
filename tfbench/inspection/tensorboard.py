"""Write an :class:`~tfbench.inspection.report.InspectReport`: a TensorBoard run and the benchmark JSON.

``<logdir>/inspect/<model>/<time>/`` holds the Text cards (one per section) and the roofline image
(also ``roofline.png`` beside them); its ``graph``, ``optimized`` and ``partition`` runs hold the
model's graph before grappler, after it, and the partition that runs, with fused nodes named after
what they fused.  ``<logdir>/bench/inspect-<time>.json`` holds every number.
"""

from __future__ import annotations

import re
from pathlib import Path

from tfbench.inspection.report import InspectReport

#: grappler's views -> the run folder names of an inspect run.
GRAPH_RUNS = {"pre": "graph", "post": "optimized", "partition": "partition"}


def run_folder(logdir: Path, model: str) -> Path:
    """A fresh ``<logdir>/inspect/<model>/<time>/`` (the model name made safe for a folder)."""
    from tfbench.plumbing import paths

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"
    return paths.run_dir(logdir / "inspect", safe)


def write(report: InspectReport, logdir: Path) -> Path:
    """Write the run and the JSON; set ``report.run_dir`` and ``report.json_path``; return the run folder."""
    from tfbench import timing
    from tfbench.reporting import summaries
    from tfbench.rewriting import grappler

    run = run_folder(logdir, report.model)
    report.run_dir = str(run)
    texts = {f"inspect/{title.replace(' / ', '_').replace(' ', '_')}": f"```\n{text}\n```" if title == "summary"
             else text for title, text in report.sections().items()}
    summaries.write_text(run, texts)
    if report.roofline:
        from tfbench.inspection.roofline import plot

        info = report.machine
        title = (f"{report.model}, batch {report.batch}: {info.get('cpu', '')} ({info.get('cores', '?')} cores), "
                 f"TF {info.get('tf_version', '')}; shared machine, short run")
        png = plot(report.roofline["points"], report.roofline["peaks"], run / "roofline.png", title)
        import matplotlib.image

        image = (matplotlib.image.imread(png)[..., :3] * 255).round().astype("uint8")
        # a tag of its own: a tag shared with the Text card inspect/roofline would show only the card
        summaries.write_images(run, {"inspect/roofline_plot": image})
        report.roofline["png"] = str(png)
    if report.grappler is not None and report.grappler.graphs is not None:
        grappler.write_runs(run, report.grappler.graphs, report.grappler.passes, GRAPH_RUNS)
    rows = [r.__dict__ for r in report.modes.rows] if report.modes is not None else []
    data = timing.report("inspect", rows, {}, logdir=logdir, extra=report.to_json(), quiet=True)
    report.json_path = data["path"]
    return run
