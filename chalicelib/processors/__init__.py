"""Payment processors: each one verifies its webhooks and speaks its own dialect only here."""
