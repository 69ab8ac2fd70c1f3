"""Errors raised before any work starts, each naming the bad input and the valid choices."""


class ConfigError(ValueError):
    """A configuration value, key or name that the pipeline cannot run with."""


def unknown_name(kind: str, name: str, valid: list[str]) -> ConfigError:
    return ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")
