"""One module per `reft` subcommand; each exposes `register(subparsers)`."""
