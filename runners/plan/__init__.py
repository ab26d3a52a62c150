"""From a typed spec to what a sweep may train: keyed trials (``trials``), a search's arms (``arms``), packs,
and the cost estimate (``estimate``).  Pure computation on the spec and its data; no Ray, no MLflow.
"""
