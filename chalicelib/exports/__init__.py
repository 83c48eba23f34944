"""Customers CSV export, built in the background (SQS) into S3."""
