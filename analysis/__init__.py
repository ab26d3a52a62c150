"""Analysis: read a sweep back from MLflow and write paper-style tables, tests and figures."""
