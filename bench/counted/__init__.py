"""Counts every database query a process makes, for benchmarks of Hoist at rest (bench_idle).

Installed only by `bench.settings_counted`, never in Hoist's own settings. Each
process (django-q2 forks its workers) writes its running total to
`$HOIST_BENCH_QUERY_DIR/<pid>` about once a second; the benchmark adds them up.
"""
