"""The embedded local stack: real PostgreSQL, S3 (moto) and OpenSearch servers on loopback."""
