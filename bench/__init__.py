"""Benchmarks of Slice Portal (see bench/README.md). Never imported by the product or the tests."""
