"""Data access: the one DynamoDB table, its key builders and repositories.

Nothing above this package imports PynamoDB or builds a key string.
"""
