"""ModelOps."""
