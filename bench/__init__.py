"""Benchmarks on the local stack: ``make bench`` (= ``.venv/bin/python -m bench``).

Every figure is a ratio or a count taken inside one run on this machine, against
DynamoDB Local (never moto) started by the bench itself; docs/benchmarks.md is
rewritten from the run. ``bench.ddbhooks`` (botocore event hooks that count and
disturb DynamoDB calls) is shared with the reliability tests.
"""
