"""Benchmarks of crisp-api against bare urllib3, httpx and the original client.

Run ``python -m benchmarks`` (about twenty minutes, five of them the follow soak) or
``python -m benchmarks --quick`` (about three); ``--help`` lists the sections and the knobs.
Every contender talks to a fake Crisp server running in another process over keep-alive
loopback connections. The harness prints a markdown report, writes it with the raw figures
and a plot to ``benchmarks/results/``, and checks the project's performance targets
(PASS/MISS).

These machines are noisy, so contenders are measured in interleaved rounds and compared by
the median of their per-round ratios rather than by absolute times.
"""
