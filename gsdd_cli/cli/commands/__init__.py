"""One module per `gsdd` subcommand; each defines ``register(app)``."""
