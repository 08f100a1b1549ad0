"""Benchmark readers and official scorers: ScienceQA and MathVista."""
