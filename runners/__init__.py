"""Runners: the command line, a single local trial, and (with Ray Tune + MLflow) whole sweeps."""
