"""`rlrepro` / `python -m rlrepro`: re-executed once with MKL's vendor shim on AMD CPUs (rlrepro.blas), then the CLI."""


def entry() -> int:
    from rlrepro.blas import reexec_with_shim

    reexec_with_shim()
    from rlrepro.cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(entry())
