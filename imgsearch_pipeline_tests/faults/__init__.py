"""Fault injection: real servers stopped, restarted, killed or put behind a proxy that breaks requests."""
