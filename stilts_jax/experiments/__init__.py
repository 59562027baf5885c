"""Experiment sweeps: intermediate x target x seed runs, their execution, and the paper-style result table."""
