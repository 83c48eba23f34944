"""Dunning: what happens when a renewal or an instalment fails (retries, e-mails, the
final action). planning: the reaction that starts and ends it from payment facts; steps:
the scheduler's handlers; settings: the account's choices."""
