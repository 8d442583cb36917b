import sys

try:
    from tokentrail.cli import main

    if __name__ == "__main__":
        main()
except KeyboardInterrupt:  # Ctrl-C before the CLI's own handling is in place (imports)
    print("interrupted", file=sys.stderr)
    sys.exit(130)
