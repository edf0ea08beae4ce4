"""The peers' apps, served from the benchmark venv (``bench/.venv-peers``), never imported
by the project's own environment: see :mod:`bench.bench_peers`."""
