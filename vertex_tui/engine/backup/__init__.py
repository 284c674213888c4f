"""Backups: database (online backup API), storage (tar), full (both + manifest), rotation."""
