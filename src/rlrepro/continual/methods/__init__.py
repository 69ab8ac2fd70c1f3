"""Continual-RL methods: one file each behind the hooks of base.Method; registry.py maps names to classes."""
