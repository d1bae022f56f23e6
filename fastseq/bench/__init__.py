"""The benchmark users run: ``python -m fastseq.bench [--quick] [--json FILE] [--plot FILE.png]``.

``cases`` defines the grid and FLOP counts, ``timing`` the timers and thread pinning,
``report`` the table, JSON and plot; ``__main__`` ties them together.
"""
