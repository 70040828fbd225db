"""Presenters: the live table, JSON lines, the text summary and the report.

The only place rich is imported.
"""
