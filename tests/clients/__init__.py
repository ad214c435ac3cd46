"""Helpers for the client tests (tests/test_clients_*.py): servers started on
loopback, a WebSocket client for the Jupyter kernels API, and the folder
where the tests leave their artefacts (logs, screenshots)."""
