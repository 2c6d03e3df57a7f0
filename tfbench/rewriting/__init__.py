"""Graph rewriting: grappler's passes as switches with before/after op counts (:mod:`.grappler`), the passes
on a real model and their log lines (:mod:`.passes`), fused against unfused ops and XLA (:mod:`.fusion`).

May import: plumbing, reporting, timing, operators, models, data.
"""
