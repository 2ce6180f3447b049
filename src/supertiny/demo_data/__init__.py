"""The embedded demo dataset: a home-and-car voice assistant (see ``generator``)."""
