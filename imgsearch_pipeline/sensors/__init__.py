"""Sensors that turn new S3 objects into partition runs."""
