"""Benchmarks: each figure is printed beside a bare-database reference measured in the same run.

The machine is a shared 2-core VM, so absolute figures move by 10–50 % between runs while a
ratio taken in one sitting moves much less; see the team's BENCHMARKS.md for the method and
reference orders of magnitude. Every benchmark module exposes `run(quick, backends)`
returning a list of result dicts, so a combined report can call them all.
"""
