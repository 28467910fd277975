"""corral.reconcile."""
