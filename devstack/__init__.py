"""Local stand-ins for AWS and Stripe, for `make dev` and the tests.

Nothing in here is shipped: chalicelib never imports devstack.
"""
