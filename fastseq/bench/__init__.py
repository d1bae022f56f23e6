"""The benchmark users run: ``python -m fastseq.bench [--quick] [--cases SEL ...] [--json FILE]
[--compare OLD.json] [--plot FILE.png]``.

``cases`` defines the grid and FLOP counts, ``select`` the ``--cases`` selectors,
``timing`` the timers (alternating rounds) and thread pinning, ``bandwidth`` the batch-1
bound, ``ort`` the ONNX Runtime competitor, ``stats`` the spreads, verdict rule and flags,
``report`` the table, JSON and plot, ``compare`` the change against a saved run;
``__main__`` ties them together. docs/performance.md is the reading guide.
"""
