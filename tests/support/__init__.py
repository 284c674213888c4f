"""Helpers shared by tests in every folder (importable as `support`: pytest puts tests/ on
sys.path for tests/conftest.py). Fixtures stay in the conftest modules."""
