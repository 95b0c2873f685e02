"""Shared machinery, no tasks: errors, secrets and prompts, rendering, the task boundary and
output (cli), one task run with its fan-out and poll helper (run), SSH and the command
runner (ssh), idempotent primitives (ops) and the inventory. Every namespace builds on it.
"""
