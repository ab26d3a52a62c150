"""What runs inside a Ray Tune trial, on any node: the sweep trainable (``trial``), a search configuration's
trainable (``tuning_trial``), their checkpoints (``checkpoints``) and the typed contract the driver hands them
(``contract``).  A worker gets everything it needs as arguments; it never reads the spec or plans again.
"""
